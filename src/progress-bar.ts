/**
 * The demo's progress bar: one line, redrawn in place at most every 50 ms on a terminal; where
 * stdout is not a terminal, only the final line is printed.
 */
export class ProgressBar {
  #done = 0
  #drawnAt = 0
  readonly #started = performance.now()
  readonly #tty = process.stdout.isTTY === true

  constructor(
    readonly label: string,
    readonly total: number,
    readonly unit: string,
  ) {
    this.#draw(true)
  }

  update(done: number): void {
    this.#done = done
    this.#draw(done >= this.total)
  }

  stop(): void {
    if (this.#tty) {
      this.#draw(true)
      process.stdout.write('\n')
    } else {
      console.log(this.#line())
    }
  }

  #line(): string {
    const width = 30
    const part = this.total > 0 ? Math.min(1, this.#done / this.total) : 1
    const filled = Math.round(part * width)
    const seconds = (performance.now() - this.#started) / 1000
    const left = part > 0 && part < 1 ? ` | ${Math.ceil(seconds / part - seconds)} s left` : ''
    const bar = '█'.repeat(filled) + '░'.repeat(width - filled)
    return `${this.label.padEnd(12)} ${bar} ${Math.round(part * 100)}% | ${this.#done}/${this.total} ${this.unit}${left}`
  }

  #draw(force: boolean): void {
    const now = performance.now()
    if (!this.#tty || (!force && now - this.#drawnAt < 50)) return
    this.#drawnAt = now
    process.stdout.write(`\r${this.#line()}\x1b[K`)
  }
}
