// The task of bench/bullmq.mjs, for the local Pool, the BullMQ backend's worker host and
// BullMQ's inline processor alike.

export function square(x) {
  return x * x
}
