// A member that falls behind a compacted log catches up by snapshot, between real processes: the leader
// dumps its registry to a file and streams it over InstallSnapshot; the follower installs it into its
// own RocksDB (src/storage/registry-snapshots.ts). With --snapshot-count 20 the log is compacted every
// 20 entries, so a follower killed for 150 registrations can only come back through a snapshot.

import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
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

const SCOPE = 'snap';

async function leaderId(a: AnchorProcess): Promise<string | undefined> {
  const c = client(a.info.grpc, 'Membership');
  try {
    const view = await c.call<{ members: { id: string; leader: boolean }[] }>(
      'Members',
      { scope: SCOPE },
      3_000,
    );
    return view.members.find((m) => m.leader)?.id;
  } finally {
    c.close();
  }
}

async function resolveLocal(a: AnchorProcess, name: string): Promise<string[]> {
  const c = client(a.info.grpc, 'Registry');
  try {
    const res = await c.call<{ instances?: { id: string }[] }>('Resolve', {
      name,
      consistency: 'CONSISTENCY_STALE',
    });
    return (res.instances ?? []).map((i) => i.id).sort();
  } finally {
    c.close();
  }
}

describe('snapshot catch-up (3 real processes, --snapshot-count 20)', function () {
  this.timeout(120_000);
  const dirs: string[] = [];

  after(async () => {
    await killAll();
    for (const d of dirs) await removeDir(d);
  });

  it('a follower killed while the log was compacted past it comes back with every registration', async () => {
    for (let i = 0; i < 3; i++) dirs.push(await tempDir(`snap${i}`));
    const extraArgs = ['--snapshot-count', '20'];
    const first = await startAnchorProcess({
      dataDir: dirs[0]!,
      scopes: [SCOPE],
      bootstrapExpect: 3,
      extraArgs,
    });
    const bootstrap = [first.info.p2p[0]!];
    const anchors = [
      first,
      ...(await Promise.all(
        [1, 2].map((i) =>
          startAnchorProcess({
            dataDir: dirs[i]!,
            scopes: [SCOPE],
            bootstrapExpect: 3,
            bootstrap,
            extraArgs,
          }),
        ),
      )),
    ];
    const leaderPeer = await eventually('a leader', () => leaderId(first));
    const leader = anchors.find((a) => a.info.peerId === leaderPeer)!;
    const followerIndex = anchors.findIndex((a) => a !== leader);
    const follower = anchors[followerIndex]!;
    await kill(follower);

    const c = client(leader.info.grpc, 'Registry');
    try {
      for (let n = 0; n < 150; n++) {
        await c.call('Register', {
          name: `${SCOPE}/svc-${n % 10}`,
          instance: { id: `i${n}`, address: '10.0.0.1', port: 1000 + n },
        });
      }
    } finally {
      c.close();
    }

    const back = await startAnchorProcess({
      dataDir: follower.dataDir,
      scopes: [SCOPE],
      bootstrapExpect: 3,
      bootstrap,
      extraArgs,
    });
    const want = Array.from({ length: 15 }, (_, k) => `i${k * 10 + 3}`).sort();
    await eventually('the restarted follower to hold every registration', async () => {
      const got = await resolveLocal(back, `${SCOPE}/svc-3`);
      return JSON.stringify(got) === JSON.stringify(want) ? got : undefined;
    });
    expect(leader.logs.some((l) => l.includes('snapshot delivered'))).to.equal(true);
    // The received file was installed, then removed; the leader's dump stays for other followers.
    expect(await readdir(join(follower.dataDir, 'snapshots'))).to.deep.equal([]);
  });
});
