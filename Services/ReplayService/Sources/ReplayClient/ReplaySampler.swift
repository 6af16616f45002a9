import ReplayStorage

/// Draws batches of samples from one table: each `next()` asks for `batchSize` items in a
/// single Sample call, streamed in flexible batches of `flexibleBatchSize`.
public struct ReplaySampler: Sendable {
    /// The connection used.
    public let client: ReplayClient
    /// The table sampled.
    public let table: String
    /// Items per `next()`.
    public let batchSize: Int
    /// Items per streamed response (0 = the whole batch in one response).
    public let flexibleBatchSize: Int
    /// How long each streamed response may wait for data (nil = forever).
    public let timeout: Duration?

    /// A sampler of `table`; throws `.invalidArgument` when `batchSize < 1` or
    /// `flexibleBatchSize < 0`.
    public init(client: ReplayClient, table: String, batchSize: Int, flexibleBatchSize: Int = 0,
                timeout: Duration? = nil) throws(ReplayError) {
        guard batchSize >= 1 else { throw ReplayError(.invalidArgument, "sampler of '\(table)': batchSize \(batchSize) must be >= 1") }
        guard flexibleBatchSize >= 0 else {
            throw ReplayError(.invalidArgument, "sampler of '\(table)': flexibleBatchSize \(flexibleBatchSize) must be >= 0")
        }
        self.client = client
        self.table = table
        self.batchSize = batchSize
        self.flexibleBatchSize = flexibleBatchSize
        self.timeout = timeout
    }

    /// The next `batchSize` samples (blocking until the table's rate limiter allows them).
    public func next() async throws -> [ReplaySample] {
        try await client.sample(table: table, count: batchSize, batchSize: flexibleBatchSize, timeout: timeout)
    }
}
