/** Settles as 'pending' when `promise` has not settled after a few turns of the event loop. */
export async function promiseState(promise: Promise<unknown>): Promise<'pending' | 'fulfilled' | 'rejected'> {
  let state: 'pending' | 'fulfilled' | 'rejected' = 'pending';
  promise.then(
    () => {
      state = 'fulfilled';
    },
    () => {
      state = 'rejected';
    },
  );
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  return state;
}
