/** `--vm-network` / `--emu-network`: TAG:SUBNET checked at the edge, and plans that would collide refused. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { productDrivers } from '../../src/levels/index.js';
import { parseNetworkPlan } from '../../src/levels/network-option.js';

const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
};

test('a network plan is TAG:A.B.0.0/16', () => {
  assert.deepEqual(parseNetworkPlan('vk:10.190.0.0/16'), { tag: 'vk', subnet: '10.190.0.0/16' });
  for (const bad of ['', 'vk', 'vk:10.190.0.0/24', 'vk:10.190.1.0/16', 'vk:10.300.0.0/16', 'v:10.1.0.0/16', 'vkk:10.1.0.0/16', 'V1:10.1.0.0/16', '1v:10.1.0.0/16', 'vk:10.1.0.0/16:x']) {
    assert.equal(code(() => parseNetworkPlan(bad, '--vm-network')), 'STRATA_ERR_CONFIG', bad);
  }
});

test('the vm and emu plans of one daemon must differ in tag and subnet', () => {
  assert.equal(code(() => productDrivers('/nonexistent', { vmNetwork: { tag: 'se', subnet: '10.91.0.0/16' } })), 'STRATA_ERR_CONFIG', 'the emu default tag');
  assert.equal(code(() => productDrivers('/nonexistent', { emuNetwork: { tag: 'sx', subnet: '10.89.0.0/16' } })), 'STRATA_ERR_CONFIG', 'the vm default subnet');
  const drivers = productDrivers('/nonexistent', { vmNetwork: { tag: 'vk', subnet: '10.190.0.0/16' }, emuNetwork: { tag: 'wk', subnet: '10.210.0.0/16' } });
  assert.deepEqual(drivers.map((d) => d.level), ['env', 'os', 'vm', 'emu']);
});
