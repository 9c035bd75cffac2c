import { MESSAGE_TYPES, type Message, type MessageType, type NodeId } from './types.ts';

const KNOWN_TYPES: ReadonlySet<string> = new Set(MESSAGE_TYPES);

const isIndex = (n: unknown): boolean => Number.isSafeInteger(n) && (n as number) >= 0;

/** A message with every field at its zero value but those given: the one way messages are built. */
export function makeMessage(
  type: MessageType,
  from: NodeId,
  to: NodeId,
  term: number,
  fields: Partial<Message> = {},
): Message {
  return {
    type,
    from,
    to,
    term,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    snapshot: null,
    context: null,
    ...fields,
  };
}

/**
 * Why a message from a peer cannot be stepped, or null when it is well formed. The transport decodes the
 * wire into this shape; this is the core's own guard, so a hostile or broken peer is refused here with a
 * reason instead of corrupting state, while the core's own bugs still surface as exceptions.
 */
export function malformed(m: Message): string | null {
  if (!KNOWN_TYPES.has(m.type)) return `unknown message type ${String(m.type)}`;
  if (typeof m.from !== 'string' || m.from === '' || typeof m.to !== 'string')
    return 'from/to must be node ids';
  if (
    !isIndex(m.term) ||
    !isIndex(m.logTerm) ||
    !isIndex(m.index) ||
    !isIndex(m.commit) ||
    !isIndex(m.rejectHint)
  ) {
    return 'term, logTerm, index, commit and rejectHint must be non-negative integers';
  }
  if (!Array.isArray(m.entries)) return 'entries must be a list';
  for (let i = 0; i < m.entries.length; i++) {
    const e = m.entries[i]!;
    if (!isIndex(e.term) || !isIndex(e.index) || !(e.data instanceof Uint8Array))
      return `entry ${i} is malformed`;
    if (e.kind !== 'normal' && e.kind !== 'conf-change') return `entry ${i} has unknown kind`;
    // Appended entries must follow the entry they are attached to, without gaps.
    if (m.type === 'append' && e.index !== m.index + 1 + i)
      return `entry ${i} has index ${e.index}, not ${m.index + 1 + i}`;
  }
  if (m.type === 'snapshot') {
    const s = m.snapshot;
    if (!s || !isIndex(s.meta?.index) || !isIndex(s.meta.term) || !(s.data instanceof Uint8Array))
      return 'snapshot is malformed';
    if (!Array.isArray(s.meta.conf?.voters) || !Array.isArray(s.meta.conf.learners))
      return 'snapshot membership is malformed';
  }
  if (m.context !== null && !(m.context instanceof Uint8Array)) return 'context must be bytes';
  return null;
}
