// The targets of bench/start.mjs's children. A module of its own, without side effects: a child
// imports it to find its target (importing bench/start.mjs itself would run the benchmark again).
export async function echoFirst(q) {
  await q.put(1)
}

export function idle(q) {
  q.putSync(process.pid)
  setInterval(() => {}, 1 << 30)
  return new Promise(() => {})
}
