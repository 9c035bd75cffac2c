import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { KEY_FILE_NAME, loadOrCreateKey } from '../../src/identity/key-file.ts';

describe('identity: the anchor key file', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aq-key-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is created once, owner-only, and the same identity comes back on the next start', async () => {
    const first = await loadOrCreateKey(join(dir, 'data'));
    const path = join(dir, 'data', KEY_FILE_NAME);
    expect((await stat(path)).mode & 0o777).to.equal(0o600);
    const again = await loadOrCreateKey(join(dir, 'data'));
    expect([...again.publicKey]).to.deep.equal([...first.publicKey]);
    expect((await readFile(path, 'utf8')).split('\n')[0]).to.equal('aqmesh-ed25519-seed-v1');
  });

  it('refuses a damaged key file with one line naming the file, instead of making a new identity', async () => {
    await loadOrCreateKey(dir);
    const path = join(dir, KEY_FILE_NAME);
    await writeFile(path, 'aqmesh-ed25519-seed-v1\nnot-hex\n');
    let message = '';
    await loadOrCreateKey(dir).catch((e: Error) => {
      message = e.message;
    });
    expect(message).to.equal(
      `${path}: the second line must be 64 lowercase hex digits and nothing may follow`,
    );
  });
});
