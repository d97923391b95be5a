// Statistics shared by the bench's processes, so that every figure of one kind is
// computed by the same rule.

/** The nearest-rank percentile `p` (0–100) of ascending `sorted`; null when empty. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return null
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]
}
