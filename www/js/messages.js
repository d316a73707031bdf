// The names of the messages between the contributor's page and its workers, one definition for
// both sides. The page asks (REQUEST); the worker answers each request once (REPLY) and may send
// NOTICE messages in between.

// What the page asks a worker to do.
export const REQUEST = Object.freeze({
  LOAD: 'load', // { study }: load the pinned model and the compiled study
  ANALYZE: 'analyze', // { file, shard, shards }: analyse this worker's share of the export
  TAKE: 'take', // hand over this worker's analyses (JSON text)
  ADD: 'add', // { json }: receive another worker's analyses
  REPORT: 'report', // { memo, excluded, tokens }: prepare the batch (JSON text) and the memo
  TOKEN_REQUESTS: 'token-requests', // { key }: token requests under the study's key (JSON text)
  REDEMPTION: 'redemption', // { pending, invitation }: the body that redeems the invitation
  FINISH_TOKENS: 'finish-tokens', // { pending, answer }: the tokens (JSON text)
  COMMIT: 'commit', // { memo, key }: freeze the batch as sent in the memo
});

// How a worker answers a request (each carries the request's id).
export const REPLY = Object.freeze({ DONE: 'done', ERROR: 'error' });

// What a worker says while it works.
export const NOTICE = Object.freeze({
  PROGRESS: 'progress', // { read, total, done }: how far the analysis is
  STATUS: 'status', // { text }: what the worker is doing
  DOWNLOAD: 'download', // { file, received, total }: bytes of a pinned model file arrived
});
