import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from './xlcfg.ts';
import { loadDomainConfig, parseDefines, resolveDomainConfig, toDomainConfig, describeDomain } from './domain-config.ts';

const values = (src: string, vars: Record<string, string> = {}) =>
  Object.fromEntries([...parseConfig(src, 'test.cfg', new Map(Object.entries(vars))).entries].map(([k, e]) => [k, e.value]));

t.test('values: strings, numbers, lists, comments, +=, ;', async (t) => {
  t.same(values(`
# comment
name = "a b" # trailing comment
s2 = 'it\\'s'; n = 42
hex = 0x10
neg = -3
esc = "tab\\there\\nline \\"q\\" back\\\\"
disk = [ 'file:/a.img,xvda,w',
         "file:/b.img,xvdb,r", ]
disk += [ 'file:/c.img,xvdc,r' ]
empty = []
nested = [ [1, 2], "x" ]
`), {
    name: 'a b', s2: "it's", n: 42, hex: 16, neg: -3, esc: 'tab\there\nline "q" back\\',
    disk: ['file:/a.img,xvda,w', 'file:/b.img,xvdb,r', 'file:/c.img,xvdc,r'], empty: [], nested: [[1, 2], 'x'],
  });
});

t.test('variables: ${var}, ${var:-default}, require, and -D parsing', async (t) => {
  t.same(values('a = "${x}-${y:-def}"\nb = [ "${x}" ]', { x: '1' }), { a: '1-def', b: ['1'] });
  t.same(values('a = "${y:-}"'), { a: '' });
  t.same([...parseDefines(['vmid=3:ip=', 'mem=72'])], [['vmid', '3'], ['ip', ''], ['mem', '72']], "the CD's -D vmid=3:ip=");
  t.throws(() => parseDefines(['3x=1']), { code: 'WV_ERR_CONFIG', message: /"3x=1" is not var=value/ });
  t.throws(() => values('\n  a = "${nope}"'), { code: 'WV_ERR_CONFIG', message: /^test\.cfg:2:7: variable "nope" is not set: give it with -D nope=VALUE/ });
  t.throws(() => values('require = ["ip"]\na = 1'), { message: /test\.cfg:1:1: this config requires variable "ip"/ });
  t.same(values('require = ["ip"]\na = "${ip}"', { ip: '10.0.0.1' }).a, '10.0.0.1');
  t.throws(() => values('a = "${1bad}"'), { message: /is not a variable reference/ });
});

t.test('syntax errors name file, line and column', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['name = "open', /test\.cfg:1:8: a string is not closed on its line/],
    ['\nname "x"', /test\.cfg:2:6: expected "=" after "name", found the string "x"/],
    ['memory = 12abc', /test\.cfg:1:10: "12abc" is not a number/],
    ['disk = [ "a" "b" ]', /test\.cfg:1:14: expected "," or "\]" in a list, found the string "b"/],
    ['disk = [ "a",', /expected a value .* found the end of the file/],
    ['a = 1 2', /test\.cfg:1:7: expected the end of the line after the value of "a"/],
    ['= 1', /test\.cfg:1:1: expected a setting name, found "="/],
    ['a = "x\\q"', /unknown escape "\\q"/],
    ['a = @', /test\.cfg:1:5: unexpected character "@"/],
    ['a = 1\na += [2]', /test\.cfg:2:1: "a" is not a list/],
  ];
  for (const [src, why] of cases) t.throws(() => values(src), { code: 'WV_ERR_CONFIG', message: why }, JSON.stringify(src));
});

t.test('a domain config resolves, checks every key, and maps to createDomain', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-cfg-'));
  writeFileSync(join(dir, 'g.wasm'), 'x');
  const resolve = (src: string, vars: Record<string, string> = {}) => resolveDomainConfig(parseConfig(src, join(dir, 'd.cfg'), new Map(Object.entries(vars))));
  const d = resolve(`name = "web-\${id}"\nkernel = "g.wasm"\nmemory = "\${mem:-64}"\nroot = "/dev/xvda1 ro"\nextra = "4"\ncpus = 1\nmcuadv = 5\nwarp = 2000\non_reboot = "restart"\nvif = ['ip=10.0.0.2 10.0.0.3,mac=00:16:3e:00:00:01']`, { id: '7' });
  t.equal(d.kernel, join(dir, 'g.wasm'), 'the image path is relative to the config file');
  t.equal(d.name, 'web-7');
  t.equal(d.memory, 64);
  t.equal(d.cmdline, 'root=/dev/xvda1 ro 4');
  t.same(d.ips, ['10.0.0.2', '10.0.0.3']);
  t.same(d.sched, { mcuadv: 5, warp: 2000 });
  t.match(describeDomain(d), /VM IP address\(es\)\s+: "10\.0\.0\.2,10\.0\.0\.3"/);
  t.same(toDomainConfig(d).vifs, ['ip=10.0.0.2 10.0.0.3,mac=00:16:3e:00:00:01'], 'vifs go to createDomain');
  t.throws(() => resolve(`kernel = "g.wasm"\nvif = ['ip=10.0.0.300']`), { code: 'WV_ERR_CONFIG', message: /d\.cfg:2:1: .*"10\.0\.0\.300" is not an IPv4 address/ });
  t.throws(() => resolve(`kernel = "g.wasm"\nvif = ['rate=fast']`), { code: 'WV_ERR_CONFIG', message: /d\.cfg:2:1: .*expected RATE\/s/ });
  t.throws(() => resolve(`kernel = "g.wasm"\nvif = ['colour=blue']`), { code: 'WV_ERR_CONFIG', message: /"colour" is not a vif setting/ });
  const disky = resolve(`kernel = "g.wasm"\ndisk = ['file:root.img,xvda,r', 'phy:sdb,xvdb,w', 'vd:data,xvdc', 'target=/srv/x.img,vdev=hda,access=ro']`);
  t.same(disky.disk, [`file:${join(dir, 'root.img')},xvda,r`, 'phy:/dev/sdb,xvdb,w', 'vd:data,xvdc,w', 'file:/srv/x.img,hda,r'], 'disk specs are checked, file paths made absolute against the config');
  t.same(toDomainConfig(disky).disks, disky.disk, 'and passed to createDomain');
  t.throws(() => resolve(`kernel = "g.wasm"\ndisk = ['file:a.img,xvda,x']`), { code: 'WV_ERR_CONFIG', message: /d\.cfg:2:1: .*access "x" is not r or w/ });
  t.throws(() => resolve(`kernel = "g.wasm"\ndisk = ['file:a.img,vda']`), { code: 'WV_ERR_CONFIG', message: /d\.cfg:2:1: .*"vda" is not a virtual device name/ });
  const plain = resolve('kernel = "g.wasm"\non_crash = "preserve"');
  t.same(toDomainConfig(plain), { image: join(dir, 'g.wasm'), memory: 16, cmdline: '', onPoweroff: 'destroy', onReboot: 'destroy', onCrash: 'preserve', onWatchdog: 'destroy', sched: {} });

  const bad: Array<[string, RegExp]> = [
    ['kernel = "g.wasm"\nmemroy = 64', /d\.cfg:2:1: unknown setting "memroy"/],
    ['memory = 64', /d\.cfg:1:1: no "kernel"/],
    ['kernel = "missing.wasm"', /d\.cfg:1:1: the kernel image "missing\.wasm" does not exist/],
    ['kernel = "g.wasm"\nmemory = "lots"', /d\.cfg:2:1: "memory" must be a number, not "lots"/],
    ['kernel = "g.wasm"\nmemory = 0', /"memory" = 0 is out of range/],
    ['kernel = "g.wasm"\nvcpus = 2', /"vcpus" = 2 is out of range \(1\.\.1\)/],
    ['kernel = "g.wasm"\non_crash = "coredump-destroy"', /"on_crash" must be destroy, restart or preserve/],
    ['kernel = "g.wasm"\nname = "has space"', /"name" = "has space" must be/],
    ['kernel = "g.wasm"\ntype = "hvm"', /"type" must be "pv"/],
    ['kernel = "g.wasm"\ndisk = [1]', /"disk" must be a list of strings/],
  ];
  for (const [src, why] of bad) t.throws(() => resolve(src), { code: 'WV_ERR_CONFIG', message: why }, src);
  t.throws(() => loadDomainConfig(join(dir, 'nope.cfg')), { message: /nope\.cfg:0:0: cannot read it: ENOENT/ });
});
