import TensorCore

/// An immutable block of trajectory data: `length` consecutive steps of every column, each
/// column one tensor whose first dimension is the step.
///
/// Items refer to chunks by reference, so trajectories that overlap (e.g. sequences
/// `0..<10` and `5..<15` of one episode) share the same chunk objects and tensor storage;
/// a chunk is freed when the last item using it is removed. Immutable after init, hence
/// `Sendable` (its tensors are value types that copy on write).
public final class Chunk: Sendable {
    /// The chunk's key (unique per writer; chosen by the caller).
    public let key: UInt64
    /// One tensor per column, each of shape `[length, ...]`.
    public let columns: [Tensor]
    /// Number of steps (the shared first dimension of every column).
    public let length: Int

    /// A chunk of `columns`; throws when there is no column, a column is 0-d, or the
    /// columns disagree on the number of steps or have none.
    public init(key: UInt64, columns: [Tensor]) throws(ReplayError) {
        guard let first = columns.first else {
            throw ReplayError(.invalidArgument, "chunk \(key): expected at least one column, found none")
        }
        guard first.rank >= 1 else {
            throw ReplayError(.invalidArgument, "chunk \(key): column 0 has shape [], expected [steps, ...]")
        }
        let n = first.shape[0]
        guard n > 0 else {
            throw ReplayError(.invalidArgument, "chunk \(key): column 0 has shape \(first.shape), expected at least one step")
        }
        for (i, c) in columns.enumerated() where c.rank < 1 || c.shape[0] != n {
            throw ReplayError(.invalidArgument, "chunk \(key): column \(i) has shape \(c.shape), expected \(n) steps like column 0 (shape \(first.shape))")
        }
        self.key = key
        self.columns = columns
        self.length = n
    }

    /// Total bytes of the column data.
    public var byteCount: Int { columns.reduce(0) { $0 + $1.count * $1.dtype.byteSize } }
}
