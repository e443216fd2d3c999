import t from 'tap';
import { parseBootOptions } from './boot-options.ts';
import { Hypervisor } from './hypervisor.ts';

t.test('the options of the Xen boot line', async (t) => {
  t.same(parseBootOptions('', 8), {});
  t.same(parseBootOptions('nosmp', 8), { cpus: 1 });
  t.same(parseBootOptions('maxcpus=4', 8), { cpus: 4 });
  t.same(parseBootOptions('maxcpus=64', 8), { cpus: 8 }, 'no more than the machine has');
  t.same(parseBootOptions('dom0_mem=131072', 8), { dom0MemoryBytes: 131072 * 1024 }, 'bare numbers are KiB, as in Xen');
  t.same(parseBootOptions('dom0_mem=512M', 8), { dom0MemoryBytes: 512 * 1024 * 1024 });
  t.same(parseBootOptions('  watchdog  sched=bvt slice=20 ', 8), { watchdogMs: 10_000, sliceMs: 20 });
  t.same(parseBootOptions('watchdog watchdog_timeout=2.5', 8), { watchdogMs: 2500 });
  t.same(parseBootOptions('watchdog_timeout=2', 8), {}, 'a timeout alone does not turn the watchdog on');
});

t.test('a bad boot option is refused with its name and the reason', async (t) => {
  const bad: Array<[string, RegExp]> = [
    ['nosmpp', /"nosmpp" is not known/],
    ['nosmp=1', /nosmp: it takes no value/],
    ['maxcpus=0', /maxcpus: "0" is not a number/],
    ['maxcpus=two', /maxcpus: "two" is not a number/],
    ['dom0_mem', /dom0_mem: it needs a size/],
    ['dom0_mem=lots', /dom0_mem: "lots" is not a size/],
    ['sched=credit', /sched: "credit" is not a scheduler here/],
    ['slice=5000', /slice: "5000" is not a number in \(0, 1000\]/],
    ['watchdog_timeout=-1', /watchdog_timeout: "-1" is not a number/],
    ['nat=1', /nat: it takes no value/],
    ['nat_allow', /nat_allow: it needs a list/],
    ['nat_allow=10.0.0.0/8,example.com', /NAT allow "example\.com"/],
    ['nat_allow=10.0.0.1:70000', /NAT allow "10\.0\.0\.1:70000"/],
    ['migrate_listen', /migrate_listen: "" is not \[ADDR:\]PORT/],
    ['migrate_listen=99999', /migrate_listen: "99999" is not \[ADDR:\]PORT/],
    ['migrate_listen=example.com:8002', /migrate_listen: "example\.com:8002"/],
  ];
  for (const [line, why] of bad) t.throws(() => parseBootOptions(line, 8), { code: 'WV_ERR_INVALID_ARGUMENT', message: why }, line);
  t.throws(() => new Hypervisor({ boot: 'nosmp bogus' }), { message: /"bogus" is not known/ }, 'the constructor refuses it too');
});

t.test('nat and nat_allow: the gateway at boot and the host addresses guests may reach', async (t) => {
  t.same(parseBootOptions('nat nat_allow=127.0.0.0/8,10.1.2.3:80', 8), { nat: true, natAllow: ['127.0.0.0/8', '10.1.2.3:80'] });
  t.same(parseBootOptions('nat_allow=none', 8), { natAllow: [] });
});

t.test('migrate_listen: where the daemon takes migrated domains', async (t) => {
  t.same(parseBootOptions('migrate_listen=8002', 8), { migrateListen: { host: '127.0.0.1', port: 8002 } });
  t.same(parseBootOptions('migrate_listen=0.0.0.0:9000', 8), { migrateListen: { host: '0.0.0.0', port: 9000 } });
  t.same(parseBootOptions('migrate_listen=[::1]:9000', 8), { migrateListen: { host: '::1', port: 9000 } });
});

t.test('explicit options win over the boot line', async (t) => {
  const hv = new Hypervisor({ boot: 'nosmp slice=20', cpus: 2 });
  t.teardown(() => hv.close());
  t.equal(hv.cpus, 2);
  t.equal(hv.sliceMs, 20);
});
