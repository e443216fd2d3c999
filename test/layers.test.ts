import t from 'tap';
import { fileURLToPath } from 'node:url';
import { checkFile, checkTree, importsOf } from '../scripts/layers.ts';

const root = fileURLToPath(new URL('..', import.meta.url));

t.test('the tree obeys the layer rule', async (t) => {
  t.same(checkTree(root), []);
});

t.test('kernel may not import node:* or upper layers', async (t) => {
  t.match(checkFile(root, 'kernel/x.ts', "import { readFile } from 'node:fs';"), [{ specifier: 'node:fs' }]);
  t.match(checkFile(root, 'kernel/x.ts', "import { Hypervisor } from '../runtime/hypervisor.ts';"), [{ why: /kernel\/ may not import from runtime\// }]);
  t.match(checkFile(root, 'kernel/x.ts', "const b = await import('binaryen');"), [{ specifier: 'binaryen' }]);
  t.same(checkFile(root, 'kernel/x.ts', "import { Errno } from './errno.ts';"), []);
  t.same(checkFile(root, 'kernel/x.test.ts', "import t from 'tap';"), []);
});

t.test('devices may not reach up into runtime', async (t) => {
  t.equal(checkFile(root, 'devices/blk/backend.ts', "export { x } from '../../runtime/index.ts';").length, 1);
  t.same(checkFile(root, 'runtime/x.ts', "import { Kernel } from '../kernel/kernel.ts';"), []);
});

t.test('import forms are all found', async (t) => {
  t.same(importsOf(`import a from 'a';\nimport type { B } from "b";\nexport * from './c.ts';\nimport './d.ts';\nconst e = await import('e');\n// import x from 'commented';`), ['a', 'b', './c.ts', './d.ts', 'e']);
});
