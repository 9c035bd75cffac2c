import type { Message, MessageType, NodeId } from './types.ts';

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
