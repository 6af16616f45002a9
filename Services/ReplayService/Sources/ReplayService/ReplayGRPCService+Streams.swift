import GRPCCore
import ReplayServiceProto
import ReplayStorage
import Synchronization

extension ReplayGRPCService {
    /// The SampleStream RPC: serves each request of `requests` in order (`num_samples` items
    /// of its table in flexible batches, like one Sample call each) on one long-lived call,
    /// calling `write` with each batch. Returns once the client has closed its side and
    /// every request was answered.
    ///
    /// Errors end the call with Sample's statuses (unknown table NOT_FOUND, bad request
    /// INVALID_ARGUMENT, rate-limiter wait past the request's timeout DEADLINE_EXCEEDED). A
    /// call idle between requests when the host shuts down ends with CANCELLED (see
    /// `StreamCloser`), as does a sample blocked at that moment.
    public func sampleStream(requests: RPCAsyncSequence<Loom_Replay_SampleRequest, any Error>, context: ServerContext,
                             deadline: ContinuousClock.Instant? = nil,
                             write: @escaping @Sendable ([ReplaySample]) async throws -> Void) async throws {
        try await closer.run("sample stream") {
            for try await request in requests {
                if context.cancellation.isCancelled || Task.isCancelled { return }
                try await self.sampleBatches(request: request, context: context, deadline: deadline, write: write)
            }
        }
    }

    /// The generated protocol's SampleStream handler, over generated messages (the served
    /// route encodes with `SampleBatchSerializer`; see `registerMethods`).
    public func sampleStream(request: RPCAsyncSequence<Loom_Replay_SampleRequest, any Error>,
                             response: RPCWriter<Loom_Replay_SampleResponse>, context: ServerContext) async throws {
        try await sampleStream(requests: request, context: context) { samples in
            try await response.write(Loom_Replay_SampleResponse(samples))
        }
    }

    /// The InsertStream RPC: inserts the items of each request message like `insert`, and
    /// confirms them by key (one confirmation per message with items) once the message's
    /// last item is in its table. An error ends the call with Insert's statuses; the items
    /// inserted before it, and only those, were confirmed (a message failing halfway
    /// confirms its first items before the error).
    public func insertStream(requests: RPCAsyncSequence<Loom_Replay_InsertRequest, any Error>, context: ServerContext,
                             deadline: ContinuousClock.Instant? = nil,
                             write: @escaping @Sendable (Loom_Replay_InsertConfirmation) async throws -> Void) async throws {
        try await closer.run("insert stream") {
            var cache: [UInt64: Chunk] = [:]
            var messages = requests.makeAsyncIterator()
            do throws(ReplayError) {
                while let message = try await self.nextMessage(&messages, "insert stream") {
                    let outcome = try await self.insertMessage(message, cache: &cache, deadline: deadline)
                    if !outcome.keys.isEmpty {
                        var confirmation = Loom_Replay_InsertConfirmation()
                        confirmation.keys = outcome.keys
                        do {
                            try await write(confirmation)
                        } catch {
                            throw ReplayError(.cancelled, "insert stream: confirmation not delivered: \(error)")
                        }
                    }
                    if let error = outcome.error { throw error }
                }
            } catch {
                throw RPCError(error)
            }
        }
    }

    /// The generated protocol's InsertStream handler.
    public func insertStream(request: RPCAsyncSequence<Loom_Replay_InsertRequest, any Error>,
                             response: RPCWriter<Loom_Replay_InsertConfirmation>, context: ServerContext) async throws {
        try await insertStream(requests: request, context: context) { try await response.write($0) }
    }
}

extension Loom_Replay_SampleResponse {
    /// The generated message for `samples` (the served routes use `SampleWire` instead).
    init(_ samples: [ReplaySample]) {
        self.init()
        items = samples.map { s in
            var item = Loom_Replay_SampledItem()
            item.info = Loom_Replay_SampleInfo(s.info)
            item.columns = (0..<s.item.columnCount).map { Loom_Replay_TensorData(s.item.column($0)) }
            return item
        }
    }
}

/// Ends the service's long-lived streams (SampleStream, InsertStream) when the host shuts
/// down: gRPC's graceful shutdown waits for open calls, and a stream idle between requests
/// would otherwise keep the server up until its client goes away.
///
/// `run` races the stream's body against `close()`; the body's task is cancelled and the
/// call ends with CANCELLED. A body blocked in the table is woken by `ReplayServer.close()`
/// (the host closes the tables first).
///
/// Concurrency: all state under one mutex; continuations are resumed outside it.
public final class StreamCloser: Sendable {
    private struct State {
        var closed = false
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Whether `close()` was called.
    public var isClosed: Bool { state.withLock { $0.closed } }

    /// Streams running in `run` now (for tests and diagnostics).
    public var openStreams: Int { state.withLock { $0.waiters.count } }

    /// Ends every stream running in `run` (and any started later) with CANCELLED.
    public func close() {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { s in
            s.closed = true
            defer { s.waiters.removeAll() }
            return Array(s.waiters.values)
        }
        for w in waiters { w.resume() }
    }

    /// Runs `body` until it returns, throws, or `close()` is called (then throws
    /// `RPCError(.cancelled)` naming `what`).
    func run(_ what: String, _ body: @escaping @Sendable () async throws -> Void) async throws {
        let closedError = RPCError(ReplayError(.cancelled, "\(what): the server is shutting down"))
        if isClosed { throw closedError }
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await body()
                return true
            }
            group.addTask {
                await self.waitClosed()
                return !self.isClosed  // cancelled with the call: let the body finish
            }
            let bodyFinished = try await group.next()!
            group.cancelAll()
            if !bodyFinished { throw closedError }
        }
    }

    /// Returns when `close()` is called or the task is cancelled.
    private func waitClosed() async {
        let id: Int = state.withLock { s in
            defer { s.nextID += 1 }
            return s.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.closed || Task.isCancelled { return true }
                    s.waiters[id] = c
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            let c = state.withLock { s in s.waiters.removeValue(forKey: id) }
            c?.resume()
        }
    }
}
