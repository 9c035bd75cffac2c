import { expect } from 'chai';
import fc from 'fast-check';
import {
  COMMAND_FORMAT_VERSION,
  type Command,
  CommandDecodeError,
  CommandEncodeError,
  commandSignedBody,
  decodeCommand,
  encodeCommand,
  type Instance,
  MIN_COMMAND_FORMAT_VERSION,
  validateCommand,
} from '../../src/registry/index.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h.replace(/\s+/g, ''), 'hex'));

const instance: Instance = {
  id: 'i1',
  address: '10.0.0.1',
  port: 80,
  tags: ['a'],
  meta: { z: '1', a: '2' },
  health: 'warning',
  ttlMs: 30_000,
};

// ---- arbitraries ----

const labelArb = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?$/);
const validNameArb = fc.array(labelArb, { minLength: 1, maxLength: 4 }).map((labels) => labels.join('/'));
const anyText = fc.string({ unit: 'binary', maxLength: 20 });
const metaKeyArb = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/),
  fc.constantFrom('__proto__', 'constructor'),
);
const healthArb = fc.constantFrom('passing', 'warning', 'critical' as const);
const validTtlArb = fc.oneof(fc.constant(0), fc.integer({ min: 1_000, max: 86_400_000 }));
const idArb = fc.stringMatching(/^[!-~]{1,20}$/);

const validInstanceArb: fc.Arbitrary<Instance> = fc.record({
  id: idArb,
  address: fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain()),
  port: fc.integer({ min: 0, max: 65535 }),
  tags: fc.array(anyText, { maxLength: 5 }),
  meta: fc.dictionary(metaKeyArb, anyText, { maxKeys: 5, noNullPrototype: true }),
  health: healthArb,
  ttlMs: validTtlArb,
});

const sessionArb = fc.record({ client: fc.stringMatching(/^[!-~]{1,12}$/), seq: fc.maxSafeNat() });

function withSession<C extends Command>(cmd: C, session: { client: string; seq: number } | null): Command {
  return session === null ? cmd : { ...cmd, session };
}

const validCommandArb: fc.Arbitrary<Command> = fc.oneof(
  fc
    .tuple(validNameArb, validInstanceArb, fc.option(sessionArb))
    .map(([name, inst, s]) => withSession({ type: 'register', name, instance: inst }, s)),
  fc
    .tuple(validNameArb, idArb, fc.option(sessionArb))
    .map(([name, id, s]) => withSession({ type: 'deregister', name, id }, s)),
  fc
    .tuple(validNameArb, idArb, healthArb, fc.option(sessionArb))
    .map(([name, id, health, s]) => withSession({ type: 'set-health', name, id, health }, s)),
);

/** The valid commands that format version 1 can carry: no set-health, no TTL. */
const validV1CommandArb: fc.Arbitrary<Command> = validCommandArb.map((cmd): Command => {
  if (cmd.type === 'set-health') {
    const { health: _, ...rest } = cmd;
    return { ...rest, type: 'deregister' };
  }
  return cmd.type === 'register' ? { ...cmd, instance: { ...cmd.instance, ttlMs: 0 } } : cmd;
});

/** Any representable command, valid for the registry or not (the codec does not judge names or limits). */
const anyCommandArb: fc.Arbitrary<Command> = fc.oneof(
  fc
    .tuple(
      anyText,
      fc.record({
        id: anyText,
        address: anyText,
        port: fc.maxSafeNat(),
        tags: fc.array(anyText, { maxLength: 4 }),
        meta: fc.dictionary(anyText, anyText, { maxKeys: 4, noNullPrototype: true }),
        health: healthArb,
        ttlMs: fc.maxSafeNat(),
      }),
      fc.option(fc.record({ client: anyText, seq: fc.maxSafeNat() })),
    )
    .map(([name, inst, s]) => withSession({ type: 'register', name, instance: inst }, s)),
  fc
    .tuple(anyText, anyText, fc.option(fc.record({ client: anyText, seq: fc.maxSafeNat() })))
    .map(([name, id, s]) => withSession({ type: 'deregister', name, id }, s)),
  fc
    .tuple(anyText, anyText, healthArb, fc.option(fc.record({ client: anyText, seq: fc.maxSafeNat() })))
    .map(([name, id, health, s]) => withSession({ type: 'set-health', name, id, health }, s)),
);

/**
 * decodeCommand either returns a command whose canonical encoding in the input's format version is the
 * input, or throws CommandDecodeError. A version 1 command re-encodes (by default) to version 2 bytes that
 * decode to the same command.
 */
function checkDecodeTotal(input: Uint8Array): void {
  let decoded: Command;
  try {
    decoded = decodeCommand(input);
  } catch (error) {
    if (!(error instanceof CommandDecodeError)) throw error;
    expect(error.message).to.match(/^cannot decode registry command at byte \d+: /);
    expect(error.message).to.not.contain('\n');
    return;
  }
  expect(hex(encodeCommand(decoded, input[0]))).to.equal(hex(input));
  const current = encodeCommand(decoded);
  expect(current[0]).to.equal(COMMAND_FORMAT_VERSION);
  expect(decodeCommand(current)).to.deep.equal(decoded);
}

describe('registry command codec', () => {
  it('pins format version 3 byte for byte (a format change must be deliberate)', () => {
    expect(COMMAND_FORMAT_VERSION).to.equal(3);
    expect(MIN_COMMAND_FORMAT_VERSION).to.equal(1);
    const encoded = encodeCommand({
      type: 'register',
      name: 'eu/pay',
      instance,
      session: { client: 'c', seq: 300 },
    });
    expect(hex(encoded)).to.equal(
      [
        '03', // format version
        '01', // type register
        '01', // flags: session
        '06 65752f706179', // name "eu/pay"
        '02 6931', // id "i1"
        '08 31302e302e302e31', // address "10.0.0.1"
        '50', // port 80
        '01', // health warning
        'b0ea01', // ttlMs 30000 as LEB128
        '01 0161', // 1 tag "a"
        '02 0161 0132 017a 0131', // 2 meta entries, keys sorted: a=2, z=1
        '01 63', // session client "c"
        'ac02', // seq 300 as LEB128
      ]
        .join('')
        .replace(/\s+/g, ''),
    );
    expect(hex(encodeCommand({ type: 'deregister', name: 'eu', id: 'x' }))).to.equal('0302000265750178');
    expect(
      hex(
        encodeCommand({
          type: 'set-health',
          name: 'eu',
          id: 'x',
          health: 'critical',
          session: { client: 'c', seq: 1 },
        }),
      ),
    ).to.equal('030301026575017802016301'); // type 3, session flag, name, id, health 2, session
    // Format 3: an auth block after the session (flag bit 1), and the governance types 4..9.
    const auth = {
      credentialId: new Uint8Array(32).fill(0xaa),
      timestampMs: 300,
      nonce: new Uint8Array(16).fill(0xbb),
      signature: new Uint8Array(64).fill(0xcc),
    };
    expect(
      hex(encodeCommand({ type: 'deregister', name: 'eu', id: 'x', session: { client: 'c', seq: 1 }, auth })),
    ).to.equal(`030203026575017801630${'1'}${'aa'.repeat(32)}ac02${'bb'.repeat(16)}${'cc'.repeat(64)}`);
    expect(
      hex(
        encodeCommand({
          type: 'revoke-credential',
          name: '',
          credentialId: new Uint8Array(32).fill(1),
          reason: 'x',
        }),
      ),
    ).to.equal(`03050000${'01'.repeat(32)}0178`);
    expect(hex(encodeCommand({ type: 'set-policy', name: '', policy: '{}' }))).to.equal('03060000027b7d');
    expect(hex(commandSignedBody({ type: 'deregister', name: 'eu', id: 'x', auth }))).to.equal(
      '0302000265750178',
    );
  });

  it('round-trips governance commands and auth blocks, and refuses them in older formats', () => {
    const auth = {
      credentialId: new Uint8Array(32).fill(1),
      timestampMs: 9,
      nonce: new Uint8Array(16).fill(2),
      signature: new Uint8Array(64).fill(3),
    };
    const cases: Command[] = [
      {
        type: 'issue-credential',
        name: '',
        credential: new Uint8Array([1, 2, 3]),
        session: { client: 'a', seq: 1 },
        auth,
      },
      { type: 'revoke-credential', name: '', credentialId: new Uint8Array(32).fill(7), reason: 'lost key' },
      { type: 'set-policy', name: '', policy: '{"version":1}' },
      { type: 'set-quota', name: '', quota: '{"version":1}', auth },
      { type: 'genesis', name: '', genesis: new Uint8Array(10) },
      { type: 'tree-head', name: '', treeHead: new Uint8Array(5) },
      { type: 'register', name: 'eu/pay', instance, auth },
    ];
    for (const cmd of cases) {
      expect(decodeCommand(encodeCommand(cmd))).to.deep.equal(cmd);
      expect(() => encodeCommand(cmd, 2)).to.throw(CommandEncodeError, /format version 2/);
    }
    expect(() => decodeCommand(bytes('02 05 00 00'))).to.throw(
      CommandDecodeError,
      /does not exist in format version 2/,
    );
    expect(() => decodeCommand(bytes('03 06 00 01 61 00'))).to.throw(CommandDecodeError, /empty name/);
    expect(() => decodeCommand(bytes('02 02 02 02 6575 01 78'))).to.throw(
      CommandDecodeError,
      /unknown flag bits 0x2/,
    );
  });

  it('still reads format version 1 (a version 1 instance has ttlMs 0), and writes it on request', () => {
    const v1 = [
      '01', // format version
      '01', // type register
      '01', // flags: session
      '06 65752f706179', // name "eu/pay"
      '02 6931', // id "i1"
      '08 31302e302e302e31', // address "10.0.0.1"
      '50', // port 80
      '01', // health warning (no ttlMs in version 1)
      '01 0161', // 1 tag "a"
      '02 0161 0132 017a 0131', // 2 meta entries, keys sorted: a=2, z=1
      '01 63', // session client "c"
      'ac02', // seq 300 as LEB128
    ]
      .join('')
      .replace(/\s+/g, '');
    const cmd: Command = {
      type: 'register',
      name: 'eu/pay',
      instance: { ...instance, ttlMs: 0 },
      session: { client: 'c', seq: 300 },
    };
    expect(decodeCommand(bytes(v1))).to.deep.equal(cmd);
    expect(hex(encodeCommand(cmd, 1))).to.equal(v1);
    expect(decodeCommand(bytes('0102000265750178'))).to.deep.equal({
      type: 'deregister',
      name: 'eu',
      id: 'x',
    });
    // Re-encoding a version 1 command gives the current version's bytes of the same command.
    const v2 = encodeCommand(decodeCommand(bytes(v1)));
    expect(v2[0]).to.equal(3);
    expect(decodeCommand(v2)).to.deep.equal(cmd);
  });

  it('round-trips every valid version 1 command through format version 1 (property)', () => {
    fc.assert(
      fc.property(validV1CommandArb, (cmd) => {
        const v1 = encodeCommand(cmd, 1);
        expect(v1[0]).to.equal(1);
        expect(decodeCommand(v1)).to.deep.equal(cmd);
        checkDecodeTotal(v1);
      }),
      { numRuns: 200 },
    );
  });

  it('round-trips register, deregister and set-health, with and without a session', () => {
    const cases: Command[] = [
      { type: 'register', name: 'eu/pay', instance },
      { type: 'register', name: 'eu/pay', instance, session: { client: 'cli-1', seq: 0 } },
      { type: 'deregister', name: 'eu/pay', id: 'i1' },
      {
        type: 'deregister',
        name: 'eu/pay',
        id: 'i1',
        session: { client: 'cli-1', seq: Number.MAX_SAFE_INTEGER },
      },
      { type: 'set-health', name: 'eu/pay', id: 'i1', health: 'critical' },
      { type: 'set-health', name: 'eu/pay', id: 'i1', health: 'passing', session: { client: 'l', seq: 9 } },
      { type: 'register', name: 'eu/pay', instance: { ...instance, ttlMs: 86_400_000 } },
    ];
    for (const cmd of cases) expect(decodeCommand(encodeCommand(cmd))).to.deep.equal(cmd);
    // No session key at all when there is none (exactOptionalPropertyTypes: omitted, not undefined).
    expect(Object.hasOwn(decodeCommand(encodeCommand(cases[0]!)), 'session')).to.equal(false);
  });

  it('is canonical: the order in which meta keys were inserted does not change the bytes', () => {
    const a = encodeCommand({
      type: 'register',
      name: 'n',
      instance: { ...instance, meta: { b: '1', a: '2', c: '3' } },
    });
    const b = encodeCommand({
      type: 'register',
      name: 'n',
      instance: { ...instance, meta: { c: '3', a: '2', b: '1' } },
    });
    expect(hex(a)).to.equal(hex(b));
  });

  it('keeps a leading byte-order mark and a "__proto__" meta key as ordinary data', () => {
    const meta = JSON.parse('{"__proto__":"p","k":"\\ufeffv"}') as Record<string, string>;
    const cmd: Command = { type: 'register', name: 'n', instance: { ...instance, tags: ['\ufeffx'], meta } };
    const decoded = decodeCommand(encodeCommand(cmd));
    expect(decoded).to.deep.equal(cmd);
    if (decoded.type !== 'register') throw new Error('expected register');
    expect(decoded.instance.tags[0]).to.equal('\ufeffx');
    expect(Object.keys(decoded.instance.meta)).to.deep.equal(['__proto__', 'k']);
    expect(Object.getPrototypeOf(decoded.instance.meta)).to.equal(Object.prototype);
  });

  it('round-trips every valid command (property)', () => {
    fc.assert(
      fc.property(validCommandArb, (cmd) => {
        expect(validateCommand(cmd)).to.equal(null);
        const encoded = encodeCommand(cmd);
        expect(encoded[0]).to.equal(3);
        expect(decodeCommand(encoded)).to.deep.equal(cmd);
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips any representable command, even one the registry would reject, byte for byte (property)', () => {
    fc.assert(
      fc.property(anyCommandArb, (cmd) => {
        const encoded = encodeCommand(cmd);
        const decoded = decodeCommand(encoded);
        expect(decoded).to.deep.equal(cmd);
        expect(hex(encodeCommand(decoded))).to.equal(hex(encoded));
      }),
      { numRuns: 300 },
    );
  });

  describe('malformed input: a CommandDecodeError with a clear message, never another error', () => {
    const valid = encodeCommand({
      type: 'register',
      name: 'eu/pay',
      instance,
      session: { client: 'c', seq: 300 },
    });

    const reject = (input: Uint8Array, pattern: RegExp): void => {
      expect(() => decodeCommand(input))
        .to.throw(CommandDecodeError)
        .with.property('message')
        .that.matches(pattern);
    };

    it('rejects empty input, an unknown version, an unknown type and unknown flag bits', () => {
      reject(new Uint8Array(0), /at byte 0: input ends where format version was expected \(truncated\?\)$/);
      reject(
        bytes('04 02 00 02 6575 01 78'),
        /unsupported format version 4 \(this build reads versions 1..3\)$/,
      );
      reject(bytes('00 02 00 02 6575 01 78'), /unsupported format version 0 /);
      reject(
        bytes('01 07 00 02 6575 01 78'),
        /at byte 1: command type 7 \(set-quota\) does not exist in format version 1$/,
      );
      reject(bytes('01 0a 00 02 6575 01 78'), /at byte 1: unknown command type 10$/);
      reject(
        bytes('02 04 00 02 6575 01 78'),
        /at byte 1: command type 4 \(issue-credential\) does not exist in format version 2$/,
      );
      reject(bytes('03 0a 00 02 6575 01 78'), /at byte 1: unknown command type 10$/);
      reject(bytes('03 02 04 02 6575 01 78'), /at byte 2: unknown flag bits 0x4$/);
      reject(bytes('01 02 02 02 6575 01 78'), /at byte 2: unknown flag bits 0x2$/);
      reject(bytes('02 02 02 02 6575 01 78'), /at byte 2: unknown flag bits 0x2$/);
    });

    it('rejects set-health in format version 1, and an unknown health in a set-health', () => {
      reject(
        bytes('01 03 00 02 6575 01 78 02'),
        /at byte 1: command type 3 \(set-health\) does not exist in format version 1$/,
      );
      expect(decodeCommand(bytes('02 03 00 02 6575 01 78 02'))).to.deep.equal({
        type: 'set-health',
        name: 'eu',
        id: 'x',
        health: 'critical',
      });
      reject(bytes('02 03 00 02 6575 01 78 03'), /at byte 8: unknown health code 3$/);
      reject(bytes('02 03 00 02 6575 01 78'), /at byte 8: input ends where health was expected/);
    });

    it('rejects every truncation of a valid encoding', () => {
      for (let n = 0; n < valid.length; n++) {
        expect(() => decodeCommand(valid.subarray(0, n)), `prefix of ${n} bytes`).to.throw(
          CommandDecodeError,
        );
      }
      reject(valid.subarray(0, 8), /at byte 4: name needs 6 bytes but only 4 remain \(truncated\?\)$/);
      reject(valid.subarray(0, 10), /at byte 10: input ends inside instance id length \(truncated\?\)$/);
    });

    it('rejects trailing bytes after a complete command', () => {
      const longer = new Uint8Array([...valid, 0]);
      reject(longer, new RegExp(`at byte ${valid.length}: 1 unexpected trailing bytes after the command$`));
    });

    it('rejects invalid UTF-8 in a string', () => {
      reject(bytes('01 02 00 02 65ff 01 78'), /at byte 3: name is not valid UTF-8$/);
      reject(bytes('01 02 00 02 65 c0 01 78'), /name is not valid UTF-8/); // overlong encoding start
      reject(bytes('01 02 00 03 eda080 01 78'), /name is not valid UTF-8/); // encoded lone surrogate
    });

    it('rejects non-minimal and oversized varints', () => {
      reject(bytes('01 02 00 8200 6575 01 78'), /at byte 3: name length is not minimally encoded$/);
      reject(bytes('01 02 01 02 6575 01 78 01 63 ffffffffffffff7f'), /session seq is larger than 2\^53-1$/);
      reject(bytes('01 02 01 02 6575 01 78 01 63 ffffffffffffffff01'), /session seq is longer than 8 bytes$/);
      reject(bytes('01 02 00 0a 6575'), /name needs 10 bytes but only 2 remain \(truncated\?\)$/);
    });

    it('rejects counts that cannot fit, an unknown health code and unsorted or repeated meta keys', () => {
      // Version 1 (no ttl) and version 2 (ttl 0 after the health).
      for (const [head, ttl] of [
        ['01 01 00 01 6e 02 6931 01 61 50', ''],
        ['02 01 00 01 6e 02 6931 01 61 50', '00'],
      ] as const) {
        reject(
          bytes(`${head} 00 ${ttl} ffffffff0f`),
          /tag count 4294967295 cannot fit in the 0 bytes that remain/,
        );
        reject(bytes(`${head} 03 ${ttl} 00 00`), /unknown instance health code 3$/);
        reject(
          bytes(`${head} 00 ${ttl} 00 02 017a 0131 0161 0132`),
          /meta key "a" is not after "z": keys must be unique and sorted$/,
        );
        reject(bytes(`${head} 00 ${ttl} 00 02 0161 0131 0161 0132`), /meta key "a" is not after "a"/);
        expect(decodeCommand(bytes(`${head} 00 ${ttl} 00 02 0161 0132 017a 0131`))).to.deep.include({
          name: 'n',
        });
      }
    });

    it('rejects a non-minimal, oversized or truncated ttl', () => {
      const head = '02 01 00 01 6e 02 6931 01 61 50 00';
      reject(bytes(`${head} 8000 00 00`), /at byte 12: instance ttl is not minimally encoded$/);
      reject(bytes(`${head} ffffffffffffffff01 00 00`), /instance ttl is longer than 8 bytes$/);
      reject(bytes(head), /at byte 12: input ends inside instance ttl \(truncated\?\)$/);
      expect(decodeCommand(bytes(`${head} e807 00 00`))).to.deep.include({
        instance: { id: 'i1', address: 'a', port: 80, health: 'passing', ttlMs: 1000, tags: [], meta: {} },
      });
    });

    it('rejects input that is not a Uint8Array', () => {
      expect(() => decodeCommand('01' as unknown as Uint8Array)).to.throw(
        CommandDecodeError,
        /not a Uint8Array/,
      );
    });

    it('never throws anything else on arbitrary bytes, and accepts only canonical encodings (property)', () => {
      const prefixed = fc
        .tuple(
          fc.constantFrom(1, 2),
          fc.constantFrom(1, 2, 3),
          fc.constantFrom(0, 1),
          fc.uint8Array({ maxLength: 40 }),
        )
        .map(([version, type, flags, rest]) => new Uint8Array([version, type, flags, ...rest]));
      fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 40 }), prefixed), checkDecodeTotal), {
        numRuns: 1000,
      });
    });

    it('never throws anything else on truncated, extended or corrupted valid encodings (property)', () => {
      const mutated = fc
        .tuple(
          fc.oneof(
            validCommandArb.map((cmd) => encodeCommand(cmd)),
            validV1CommandArb.map((cmd) => encodeCommand(cmd, 1)),
          ),
          fc.nat(),
          fc.nat(255),
          fc.constantFrom('truncate', 'flip', 'insert', 'delete'),
        )
        .map(([encoded, at, value, how]) => {
          const b = [...encoded];
          const i = at % (b.length + 1);
          if (how === 'truncate') return new Uint8Array(b.slice(0, i));
          if (how === 'flip') b[i % b.length] = value;
          else if (how === 'insert') b.splice(i, 0, value);
          else b.splice(i % b.length, 1);
          return new Uint8Array(b);
        });
      fc.assert(fc.property(mutated, checkDecodeTotal), { numRuns: 1000 });
    });
  });

  describe('values that cannot be encoded: CommandEncodeError', () => {
    it('refuses lone surrogates (they would not survive UTF-8), bad numbers and unknown health', () => {
      const reg = (patch: Partial<Instance>, name = 'n'): Command => ({
        type: 'register',
        name,
        instance: { ...instance, ...patch },
      });
      expect(() => encodeCommand(reg({}, 'a\ud800'))).to.throw(
        CommandEncodeError,
        /name "a\\u\{d800\}" has a lone UTF-16 surrogate at position 1/,
      );
      expect(() => encodeCommand(reg({ tags: ['\udc00x'] }))).to.throw(
        CommandEncodeError,
        /lone UTF-16 surrogate/,
      );
      expect(() => encodeCommand(reg({ port: -1 }))).to.throw(
        CommandEncodeError,
        /instance port -1 is not an integer/,
      );
      expect(() => encodeCommand(reg({ port: 1.5 }))).to.throw(CommandEncodeError, /instance port 1.5/);
      expect(() => encodeCommand(reg({ health: 'ok' as Instance['health'] }))).to.throw(
        CommandEncodeError,
        /health "ok"/,
      );
      expect(() =>
        encodeCommand({ type: 'deregister', name: 'n', id: 'i', session: { client: 'c', seq: 2 ** 53 } }),
      ).to.throw(CommandEncodeError, /session seq 9007199254740992 is not an integer 0..2\^53-1/);
      expect(() => encodeCommand(reg({ ttlMs: -1 }))).to.throw(
        CommandEncodeError,
        /instance ttl -1 is not an integer/,
      );
      expect(() => encodeCommand(reg({ ttlMs: undefined as unknown as number }))).to.throw(
        CommandEncodeError,
        /instance ttl undefined is not an integer/,
      );
      expect(() =>
        encodeCommand({ type: 'set-health', name: 'n', id: 'i', health: 'down' as Instance['health'] }),
      ).to.throw(CommandEncodeError, /health "down" is unknown/);
    });

    it('refuses what format version 1 cannot carry, and unknown versions', () => {
      expect(() => encodeCommand({ type: 'set-health', name: 'n', id: 'i', health: 'critical' }, 1)).to.throw(
        CommandEncodeError,
        /a set-health command cannot be written in format version 1$/,
      );
      expect(() =>
        encodeCommand({ type: 'register', name: 'n', instance: { ...instance, ttlMs: 5_000 } }, 1),
      ).to.throw(CommandEncodeError, /instance ttl 5000 cannot be written in format version 1 \(no TTLs\)$/);
      expect(() => encodeCommand({ type: 'deregister', name: 'n', id: 'i' }, 4)).to.throw(
        CommandEncodeError,
        /unknown format version 4 \(this build writes versions 1..3\)$/,
      );
    });
  });

  describe('validateCommand (what the state machine rejects on apply)', () => {
    it('reports invalid-name, invalid-instance and invalid-session with the validation message', () => {
      expect(validateCommand({ type: 'register', name: 'eu/Pay', instance })).to.deep.equal({
        code: 'invalid-name',
        message: `label "Pay" in name "eu/Pay" has an uppercase letter 'P': labels are lowercase [a-z0-9-]`,
      });
      expect(
        validateCommand({ type: 'register', name: 'eu', instance: { ...instance, port: 70000 } }),
      ).to.deep.equal({
        code: 'invalid-instance',
        message: 'instance "i1" port 70000 is not valid: a port is an integer 0..65535',
      });
      expect(validateCommand({ type: 'deregister', name: 'eu', id: 'a b' })?.code).to.equal(
        'invalid-instance',
      );
      expect(
        validateCommand({ type: 'deregister', name: 'eu', id: 'a', session: { client: '', seq: 1 } }),
      ).to.deep.equal({
        code: 'invalid-session',
        message:
          'session client "" is not valid: a session client is 1..128 printable ASCII characters without spaces',
      });
      expect(
        validateCommand({ type: 'deregister', name: 'eu', id: 'a', session: { client: 'c', seq: 1 } }),
      ).to.equal(null);
      expect(
        validateCommand({ type: 'register', name: 'eu', instance: { ...instance, ttlMs: 500 } }),
      ).to.deep.equal({
        code: 'invalid-instance',
        message:
          'instance "i1" TTL 500 ms is not valid: a TTL is 0 (no TTL check) or an integer 1000..86400000 ms (1 s to 24 h)',
      });
      expect(validateCommand({ type: 'set-health', name: 'eu', id: 'a', health: 'critical' })).to.equal(null);
      expect(
        validateCommand({ type: 'set-health', name: 'eu/', id: 'a', health: 'critical' })?.code,
      ).to.equal('invalid-name');
      expect(validateCommand({ type: 'set-health', name: 'eu', id: '', health: 'critical' })?.code).to.equal(
        'invalid-instance',
      );
      expect(
        validateCommand({ type: 'set-health', name: 'eu', id: 'a', health: 'ok' as Instance['health'] }),
      ).to.deep.equal({
        code: 'invalid-instance',
        message: 'health "ok" for instance "a" is not one of passing, warning, critical',
      });
    });
  });
});
