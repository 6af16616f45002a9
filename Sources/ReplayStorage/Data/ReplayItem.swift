import TensorCore

/// An item of a table: a trajectory (steps `offset ..< offset + length` of its chunks laid
/// end to end) with a key and a priority.
///
/// The item holds references to its chunks, not copies: items built from the same chunks
/// share storage.
public struct ReplayItem: Sendable {
    /// Unique key within the table.
    public var key: UInt64
    /// Name of the table the item goes to.
    public var table: String
    /// Sampling priority (finite, >= 0); used by prioritized and heap selectors.
    public var priority: Double
    /// The chunks holding the trajectory, in step order.
    public var chunks: [Chunk]
    /// First step of the trajectory within `chunks[0]`.
    public var offset: Int
    /// Number of steps.
    public var length: Int

    /// An item spanning steps `offset ..< offset + length` of `chunks` (concatenated).
    /// `length` defaults to every step from `offset` to the end of the last chunk.
    public init(key: UInt64, table: String, priority: Double, chunks: [Chunk], offset: Int = 0, length: Int? = nil) {
        self.key = key
        self.table = table
        self.priority = priority
        self.chunks = chunks
        self.offset = offset
        self.length = length ?? (chunks.reduce(0) { $0 + $1.length } - offset)
    }

    /// Throws when the priority is NaN, infinite or negative, or the step range does not
    /// fit the chunks.
    func validate() throws(ReplayError) {
        guard priority.isFinite && priority >= 0 else {
            throw ReplayError(.invalidArgument, "item \(key) for table '\(table)': priority \(priority) must be finite and >= 0")
        }
        guard !chunks.isEmpty else {
            throw ReplayError(.invalidArgument, "item \(key) for table '\(table)': expected at least one chunk, found none")
        }
        let total = chunks.reduce(0) { $0 + $1.length }
        guard offset >= 0, offset < chunks[0].length, length > 0, offset + length <= total else {
            throw ReplayError(.invalidArgument,
                              "item \(key) for table '\(table)': steps \(offset)..<\(offset + length) do not fit its chunks (\(total) steps, first chunk \(chunks[0].length)); expected offset in 0..<\(chunks[0].length) and length >= 1")
        }
        let columns = chunks[0].columns.count
        for c in chunks.dropFirst() where c.columns.count != columns {
            throw ReplayError(.invalidArgument,
                              "item \(key) for table '\(table)': chunk \(c.key) has \(c.columns.count) columns, chunk \(chunks[0].key) has \(columns)")
        }
    }

    /// Number of columns.
    public var columnCount: Int { chunks.first?.columns.count ?? 0 }

    /// The trajectory of column `index`: a tensor of shape `[length, ...]` (a view of the
    /// chunk when the trajectory lies in one chunk, otherwise a concatenated copy).
    public func column(_ index: Int) -> Tensor {
        // One chunk holds the whole trajectory (the common case, and every sampled item a
        // client decodes): that chunk's column, or a view of its rows; no list of parts.
        if let first = chunks.first, offset + length <= first.length {
            let column = first.columns[index]
            return offset == 0 && length == first.length ? column : column.narrowed(dim: 0, start: offset, length: length)
        }
        var parts: [Tensor] = []
        var skip = offset
        var remaining = length
        for c in chunks where remaining > 0 {
            if skip >= c.length { skip -= c.length; continue }
            let take = Swift.min(c.length - skip, remaining)
            parts.append(c.columns[index].narrowed(dim: 0, start: skip, length: take))
            remaining -= take
            skip = 0
        }
        return parts.count == 1 ? parts[0] : Tensor.cat(parts, dim: 0)
    }
}

/// What the table knew about a sampled item when it was sampled.
public struct SampleInfo: Sendable, Equatable {
    /// The item's key.
    public var key: UInt64
    /// The probability that the sampler picked this item.
    public var probability: Double
    /// Items in the table at the time of sampling (before any removal the sample caused).
    public var tableSize: Int
    /// The item's priority.
    public var priority: Double
    /// Times the item has been sampled, this sample included.
    public var timesSampled: Int

    /// A sample info record.
    public init(key: UInt64, probability: Double, tableSize: Int, priority: Double, timesSampled: Int) {
        self.key = key
        self.probability = probability
        self.tableSize = tableSize
        self.priority = priority
        self.timesSampled = timesSampled
    }
}

/// A sampled item and its `SampleInfo`.
public struct ReplaySample: Sendable {
    /// The item (sharing chunk storage with the table).
    public var item: ReplayItem
    /// Key, probability, table size, priority and times sampled.
    public var info: SampleInfo

    /// A sample (clients rebuild these from the wire format).
    public init(item: ReplayItem, info: SampleInfo) {
        self.item = item
        self.info = info
    }
}
