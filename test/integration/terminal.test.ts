/**
 * `wv top` and `wv console` in a real terminal (tmux): what a user sees and
 * the keys they press.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const wvPath = fileURLToPath(new URL('../../cli/wv.ts', import.meta.url));
const hasTmux = spawnSync('tmux', ['-V']).status === 0;

if (!hasTmux && process.env.WV_TERMINAL_TESTS === 'required') t.fail('tmux is not installed, and the terminal tests are required here');

t.test('top and console in a terminal', { skip: hasTmux ? false : 'tmux is not installed (apt-get install tmux)' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-term-'));
  const server = `wv-test-${process.pid}`;
  const wv = (...args: string[]) => spawnSync(process.execPath, [wvPath, '--state-dir', dir, ...args], { encoding: 'utf8', timeout: 60_000 });
  const tmux = (...args: string[]) => spawnSync('tmux', ['-L', server, ...args], { encoding: 'utf8' });
  t.teardown(() => { tmux('kill-server'); wv('shutdown-host', '--timeout', '1'); });
  t.equal(wv('boot', '--boot', 'nosmp').status, 0);
  t.equal(wv('create', 'spin', '--name', 'hog').status, 0);
  t.equal(wv('create', 'echo', '--name', 'talk').status, 0);
  const screen = () => tmux('capture-pane', '-p', '-t', 'term').stdout;
  const waitFor = async (re: RegExp, ms = 10_000) => {
    const end = Date.now() + ms;
    while (Date.now() < end) { if (re.test(screen())) return true; await new Promise((r) => setTimeout(r, 100)); }
    return false;
  };
  const run = (args: string) => `'${process.execPath}' '${wvPath}' --state-dir '${dir}' ${args}; echo "[exit $?]"; sleep 60`;

  tmux('new-session', '-d', '-s', 'term', '-x', '110', '-y', '20', run('top -d 0.3'));
  t.ok(await waitFor(/^wv top - up \d+ s, 1 CPUs, 3 domains/m), 'the header is drawn');
  t.ok(await waitFor(/^hog\s+\d+\s+running\s+(9\d|1\d\d)\.\d/m), 'the spinning domain shows about 100 % CPU');
  t.match(screen(), /^talk\s+\d+\s+blocked\s+0\.0/m, 'the idle one shows 0 %');
  t.notMatch(screen(), /\[exit/, 'still running');
  tmux('send-keys', '-t', 'term', 'q');
  t.ok(await waitFor(/\[exit 0\]/), 'q quits with status 0');
  tmux('kill-session', '-t', 'term');

  tmux('new-session', '-d', '-s', 'term', '-x', '110', '-y', '20', run('console talk'));
  t.ok(await waitFor(/echo: ready/), 'attaching replays the console');
  tmux('send-keys', '-t', 'term', 'hello from a terminal', 'Enter');
  t.ok(await waitFor(/echo: hello from a terminal/), 'typed input reaches the guest and comes back');
  tmux('send-keys', '-t', 'term', 'C-]');
  t.ok(await waitFor(/wv: detached[\s\S]*\[exit 0\]/), 'Ctrl-] detaches');
  t.match(wv('list').stdout, /talk\s+\d+\s+16\s+0\s+blocked/, 'the domain keeps running after detach');
});
