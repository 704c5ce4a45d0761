/**
 * The authkey handshake of CPython's `multiprocessing.connection` (3.12's wire, which 3.11 and
 * older also answer): the server sends `#CHALLENGE#{sha256}` and 40 random bytes, the client
 * answers with the HMAC of all of it (`{sha256}` + digest; a legacy peer answers a raw HMAC-MD5),
 * the server says `#WELCOME#` or `#FAILURE#`; then the roles swap, so each side proves it knows
 * the key. No request is read before both directions succeed.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

import { AuthenticationError, typeError } from './errors.js'
import type { SocketConnection } from './socket-connection.js'

const CHALLENGE = Buffer.from('#CHALLENGE#')
const WELCOME = Buffer.from('#WELCOME#')
const FAILURE = Buffer.from('#FAILURE#')
const MESSAGE_LENGTH = 40
/** Unprefixed legacy lengths: a 20-byte MD5-only challenge, a 16-byte MD5 answer. */
const LEGACY_LENGTHS = new Set([20, 16])
/** CPython's names → Node's. */
const DIGESTS: Record<string, string> = {
  md5: 'md5',
  sha256: 'sha256',
  sha384: 'sha384',
  sha3_256: 'sha3-256',
  sha3_384: 'sha3-384',
}
/** A handshake message longer than this is refused (CPython's limit). */
export const HANDSHAKE_MAX_BYTES = 256

/** An authkey as bytes: a Buffer, Uint8Array or string (UTF-8). */
export function toAuthkey(key: unknown): Buffer {
  if (typeof key === 'string') return Buffer.from(key, 'utf8')
  if (key instanceof Uint8Array) return Buffer.from(key.buffer, key.byteOffset, key.byteLength)
  throw typeError('authkey must be a Buffer, Uint8Array or string')
}

function digestAndPayload(message: Buffer): [string, Buffer] {
  if (LEGACY_LENGTHS.has(message.length)) return ['', message]
  if (message[0] === 0x7b) {
    const curly = message.indexOf(0x7d, 1)
    if (curly > 0 && curly <= 21) {
      const name = message.subarray(1, curly).toString('latin1')
      if (name in DIGESTS) return [name, message.subarray(curly + 1)]
    }
  }
  throw new AuthenticationError('unsupported message length, missing digest prefix, or unsupported digest')
}

function hmac(key: Buffer, digest: string, message: Buffer): Buffer {
  return createHmac(DIGESTS[digest] as string, key)
    .update(message)
    .digest()
}

/** The answer to a challenge's `message` (after `#CHALLENGE#`). */
function respond(key: Buffer, message: Buffer): Buffer {
  const [digest] = digestAndPayload(message)
  if (!digest) return hmac(key, 'md5', message)
  return Buffer.concat([Buffer.from(`{${digest}}`), hmac(key, digest, message)])
}

function verify(key: Buffer, message: Buffer, response: Buffer): void {
  const [digest, mac] = digestAndPayload(response)
  const expected = hmac(key, digest || 'md5', message)
  if (expected.length !== mac.length || !timingSafeEqual(expected, mac)) throw new AuthenticationError('digest received was wrong')
}

/** The server's half: challenges the peer, which must prove it holds `key`. */
export async function deliverChallenge(conn: SocketConnection, key: Buffer, timeout: number): Promise<void> {
  const message = Buffer.concat([Buffer.from('{sha256}'), randomBytes(MESSAGE_LENGTH)])
  await conn.sendBytes(Buffer.concat([CHALLENGE, message]))
  const response = await conn.recvBytes({ timeout })
  try {
    verify(key, message, response)
  } catch (err) {
    await conn.sendBytes(FAILURE).catch(() => {})
    throw err
  }
  await conn.sendBytes(WELCOME)
}

/** The client's half: answers the peer's challenge with `key`. */
export async function answerChallenge(conn: SocketConnection, key: Buffer, timeout: number): Promise<void> {
  const got = await conn.recvBytes({ timeout })
  if (!got.subarray(0, CHALLENGE.length).equals(CHALLENGE)) throw new AuthenticationError('protocol error: expected a challenge')
  const message = got.subarray(CHALLENGE.length)
  if (message.length < 20) throw new AuthenticationError(`challenge too short: ${message.length} bytes`)
  await conn.sendBytes(respond(key, message))
  const verdict = await conn.recvBytes({ timeout })
  if (!verdict.equals(WELCOME)) throw new AuthenticationError('digest sent was rejected')
}
