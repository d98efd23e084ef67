/**
 * Element `i` of an array the code indexed itself (a node, endpoint or host-bridge index). Out of range
 * is a bug in the model, never bad input, so it throws a plain Error.
 */
export function at<T>(arr: ArrayLike<T>, i: number): T {
  const v = arr[i];
  if (v === undefined) throw new Error(`internal: index ${i} out of range (length ${arr.length})`);
  return v;
}

/** A value that must be present (a map entry the code inserted itself). */
export function must<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new Error(`internal: ${what} is missing`);
  return v;
}
