import Collectives

/// Which samples of a global batch a rank trains on, and how to weight its loss so that
/// DDP's average over ranks equals the mean over the global batch.
///
/// Rank `r` takes the contiguous rows `range(rank: r, batch: B, size: N)` (near-equal
/// counts, the first `B % N` ranks one more, as `shardCounts`). DDP averages gradients
/// over ranks, which is the global-batch mean only if every rank holds `B / N` samples;
/// with uneven counts `b_r`, multiply rank `r`'s mean loss by `lossScale = N · b_r / B`
/// (then `(1/N) Σ_r N b_r / B · mean_r = (1/B) Σ samples`). A rank with no sample
/// (B < N) must still run backward (a zero loss over the parameters) so its hooks fire.
public enum BatchShard {
    /// The rows of a `batch`-sample global batch that `rank` of `size` trains on.
    public static func range(rank: Int, batch: Int, size: Int) -> Range<Int> {
        precondition(size >= 1 && rank >= 0 && rank < size && batch >= 0,
                     "BatchShard.range: rank \(rank) of size \(size), batch \(batch): expected 0 <= rank < size and batch >= 0")
        let counts = shardCounts(total: batch, parts: size)
        let start = shardOffsets(counts)[rank]
        return start..<(start + counts[rank])
    }

    /// The factor for rank `rank`'s mean loss: `size · b_rank / batch` (1 when even).
    public static func lossScale(rank: Int, batch: Int, size: Int) -> Double {
        guard batch > 0 else { return 0 }
        return Double(size * range(rank: rank, batch: batch, size: size).count) / Double(batch)
    }
}
