/** The target a spare's rehearsal imports and runs (a module of its own, as a user's target is). */
export async function rehearsalTarget(q: { put(value: unknown): Promise<void> }): Promise<void> {
  await q.put(1)
}
