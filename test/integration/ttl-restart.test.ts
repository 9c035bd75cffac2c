// TTL checks survive a restart: the anchor rebuilds its TTL tracking from the registry a page at a time
// (scope-host.ts, rebuildTtl) instead of blocking its event loop, so a heartbeat that arrives before the
// rebuild reaches its name is still accepted, and an instance that stops heartbeating still expires.

import { expect } from 'chai';
import {
  type AnchorProcess,
  client,
  eventually,
  kill,
  killAll,
  removeDir,
  startAnchorProcess,
  tempDir,
} from './anchor-harness.ts';

const SCOPE = 'ttl';

describe('TTL checks across a restart (a real anchor)', function () {
  this.timeout(90_000);
  let dir = '';

  after(async () => {
    await killAll();
    if (dir !== '') await removeDir(dir);
  });

  it('accepts heartbeats at once after a restart and still expires an instance that stops sending them', async () => {
    dir = await tempDir('ttl-restart');
    let anchor: AnchorProcess = await startAnchorProcess({ dataDir: dir, scopes: [SCOPE] });
    let c = client(anchor.info.grpc, 'Registry');
    await eventually('the scope to be served', async () => c.call('Resolve', { name: `${SCOPE}/x` }));
    // Enough names that the rebuild takes several pages; the TTL instances sort last.
    for (let n = 0; n < 1_000; n++) {
      await c.call('Register', {
        name: `${SCOPE}/a-${String(n).padStart(4, '0')}`,
        instance: { id: 'i', address: '10.0.0.1', port: 80 },
      });
    }
    for (const name of ['z-kept', 'z-dropped']) {
      await c.call('Register', {
        name: `${SCOPE}/${name}`,
        instance: { id: 'w', address: '10.0.0.2', port: 80, ttlMs: 2_000 },
      });
    }
    c.close();
    await kill(anchor);

    anchor = await startAnchorProcess({ dataDir: dir, scopes: [SCOPE] });
    c = client(anchor.info.grpc, 'Registry');
    try {
      const first = await eventually('a heartbeat accepted after the restart', async () =>
        c.call<{ health: string }>('Heartbeat', { name: `${SCOPE}/z-kept`, id: 'w' }),
      );
      expect(first.health).to.equal('HEALTH_PASSING');
      const beat = setInterval(() => {
        c.call('Heartbeat', { name: `${SCOPE}/z-kept`, id: 'w' }).catch(() => {});
      }, 500);
      try {
        const health = async (name: string) => {
          const r = await c.call<{ instances: { health: string }[] }>('Resolve', {
            name: `${SCOPE}/${name}`,
          });
          return r.instances[0]?.health;
        };
        await eventually(
          'the silent instance to turn critical',
          async () => ((await health('z-dropped')) === 'HEALTH_CRITICAL' ? true : undefined),
          20_000,
        );
        expect(await health('z-kept')).to.equal('HEALTH_PASSING');
      } finally {
        clearInterval(beat);
      }
    } finally {
      c.close();
    }
  });
});
