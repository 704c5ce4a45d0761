// Type tests of managers, Listener/Client and wait (compiled by `npm run test:types`, never run):
// proxies carry their element types, a registered type's proxy has its public methods as async
// calls and nothing else, wait() gives back the types it was given.
import {
  Client,
  type DictProxy,
  Listener,
  type ListProxy,
  Manager,
  Pipe,
  type Proxied,
  Queue,
  type SocketConnection,
  wait,
} from '../dist/index.js'

type Equal<X, Y> = (<T>() => T extends X ? 1 : 2) extends <T>() => T extends Y ? 1 : 2 ? true : false
function check<T extends true>(): T | undefined {
  return undefined
}

declare class Counter {
  constructor(start?: number)
  increment(by?: number): number
  later(ms: number): Promise<string>
  _hidden(): void
  readonly label: string
}

export async function managers(): Promise<void> {
  const m = await Manager.start({ types: { Counter: { module: new URL('./counter.js', import.meta.url), name: 'Counter' } } })
  const d = await m.dict<string, number>({ init: { a: 1 } })
  check<Equal<typeof d, DictProxy<string, number>>>()
  const v = await d.get('a')
  check<Equal<typeof v, number | undefined>>()
  // @ts-expect-error a number key in a dict of string keys
  await d.set(1, 2)
  const l = await m.list<string>({ init: ['x'] })
  check<Equal<typeof l, ListProxy<string>>>()
  const first = await l.at(0)
  check<Equal<typeof first, string>>()
  // @ts-expect-error a number in a list of strings
  await l.push(3)
  for await (const [k, n] of d) check<Equal<[typeof k, typeof n], [string, number]>>()
  const c = await m.create<Counter>('Counter', [1])
  check<Equal<typeof c, Proxied<Counter>>>()
  const n = await c.increment(2)
  check<Equal<typeof n, number>>()
  const s = await c.later(5)
  check<Equal<typeof s, string>>()
  // @ts-expect-error a string where the method takes a number
  await c.increment('x')
  // @ts-expect-error methods starting with _ are not exposed
  await c._hidden()
  // @ts-expect-error data properties are not calls
  await c.label()
  const q = await m.Queue<number>()
  const item = await q.get({ timeout: 10 })
  check<Equal<typeof item, number>>()
  await m.shutdown()
}

export async function connections(): Promise<void> {
  const l = await new Listener<string>({ address: '127.0.0.1:0', authkey: 'k' }).listening()
  const conn = await l.accept()
  check<Equal<typeof conn, SocketConnection<string>>>()
  const c = await Client<number>({ address: l.address, authkey: 'k' })
  const got = await c.recv()
  check<Equal<typeof got, number>>()
  const [a] = Pipe<string>()
  const q = new Queue<number>()
  const ready = await wait([a, q, c], 100)
  check<Equal<typeof ready, (typeof a | typeof q | typeof c)[]>>()
  // @ts-expect-error wait takes connections, queues, processes and listeners
  await wait([1])
}
