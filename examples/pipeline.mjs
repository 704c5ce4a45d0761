// A producer/consumer pipeline across processes: one producer process feeds a JoinableQueue,
// several consumer processes take from it and put results on a second Queue, the parent
// collects them.
//
//   node examples/pipeline.mjs [--count 100000] [--consumers 3]
//
// The work: the number of Collatz steps of every n from 1 to `--count`. Prints how many items each
// consumer handled, the total number of steps and the n with the longest chain. Shows: queues
// passed to processes as `args` (they arrive live), `for await` over a queue (it ends when the
// queue is closed and drained), `taskDone()` and `await jobs.join()`, and a bounded queue
// (`maxsize`) that holds the producer back when the consumers fall behind.
import { parseArgs } from 'node:util'
import { JoinableQueue, Process, parentProcess, Queue } from 'multiproc'

/** Producer process: puts 1..count, waiting whenever the queue is full. */
export async function produce(jobs, count) {
  for (let n = 1; n <= count; n++) await jobs.put(n)
}

/** Consumer process: one result per job, then marks the job done. */
export async function consume(jobs, results) {
  for await (const n of jobs) {
    let steps = 0
    for (let x = n; x !== 1; x = x % 2 === 0 ? x / 2 : 3 * x + 1) steps++
    await results.put({ n, steps, by: process.pid })
    jobs.taskDone()
  }
}

if (!parentProcess()) {
  const { values } = parseArgs({ options: { count: { type: 'string', default: '100000' }, consumers: { type: 'string', default: '3' } } })
  const count = Number(values.count)
  const jobs = new JoinableQueue({ maxsize: 1000 })
  const results = new Queue()
  const modules = [import.meta.url]
  const producer = new Process({ target: produce, args: [jobs, count], modules, name: 'producer' })
  const consumers = Array.from(
    { length: Number(values.consumers) },
    (_, i) => new Process({ target: consume, args: [jobs, results], modules, name: `consumer-${i + 1}` }),
  )
  for (const p of [producer, ...consumers]) await p.start()

  // Collect while the pipeline runs, so that `results` never fills up.
  const collected = (async () => {
    const byConsumer = new Map()
    let total = 0
    let longest = { n: 1, steps: 0 }
    for await (const r of results) {
      byConsumer.set(r.by, (byConsumer.get(r.by) ?? 0) + 1)
      total += r.steps
      if (r.steps > longest.steps) longest = r
    }
    return { byConsumer, total, longest }
  })()

  await producer.join() //       every job is in the queue,
  await jobs.join() //           every job is done, so every result is in `results`
  jobs.close() //                the consumers' `for await` ends and they exit
  results.close() //             and so does ours, once it has drained `results`
  for (const p of consumers) await p.join()
  const { byConsumer, total, longest } = await collected

  const names = new Map(consumers.map((p) => [p.pid, p.name]))
  for (const [pid, n] of byConsumer) console.log(`${names.get(pid)} (pid ${pid}) handled ${n} jobs`)
  console.log(`${count} jobs, ${total} Collatz steps in all; the longest chain starts at ${longest.n} (${longest.steps} steps)`)
}
