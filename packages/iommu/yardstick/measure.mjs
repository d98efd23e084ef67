// What the scripts of this folder measure with: the process's CPU time and the median of a set of figures.

/** The process's CPU time (user + system) in ns. */
export function cpuNs() {
  const c = process.cpuUsage();
  return (c.user + c.system) * 1000;
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}
