import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';

describe('CELFORGE_FLEET_ROLE_WEIGHTS', () => {
  it("reads each role's fair-share weight; unset, every role weighs 1", () => {
    expect(loadConfig({}).fleetRoleWeights).toBeUndefined();
    expect(loadConfig({ CELFORGE_FLEET_ROLE_WEIGHTS: 'admin=4, user=0.5' }).fleetRoleWeights).toEqual({ admin: 4, user: 0.5 });
  });

  it('refuses an unknown role, a missing or out-of-range weight', () => {
    for (const value of ['root=2', 'admin', 'admin=', 'user=0', 'user=101', 'admin=-1', 'admin=2x']) {
      expect(() => loadConfig({ CELFORGE_FLEET_ROLE_WEIGHTS: value }), value).toThrow(/CELFORGE_FLEET_ROLE_WEIGHTS/);
    }
  });
});
