/**
 * The entry point of every spawned child process: its control socket is named by the
 * environment, its other descriptors are at the parent's numbers.
 */
import { runChild } from './run.js'

const fd = Number(process.env.MULTIPROC_CONTROL_FD)
delete process.env.MULTIPROC_CONTROL_FD
runChild({ fd, forked: false })
