import GRPCCore
import ReplayServiceProto
import Synchronization

/// One open Insert call: `send` queues a message (waiting only while `capacity` messages
/// are queued and not yet handed to gRPC), `finish` ends the stream and returns how many
/// items the server inserted. Several messages are in flight at once; nothing waits for a
/// per-message round trip.
///
/// When the call fails (a rejected item, a lost connection), the next `send` or `finish`
/// throws its error. Use from one task at a time.
public final class InsertStream: Sendable {
    private let input: AsyncStream<Loom_Replay_InsertRequest>.Continuation
    private let call: Task<UInt64, any Error>
    private let state: StateBox
    private let capacity: Int

    private struct State {
        var queued = 0
        var done = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    /// The shared state, in a class so the call's task can hold it.
    private final class StateBox: Sendable {
        let mutex = Mutex(State())
        func withLock<R>(_ body: (inout State) -> R) -> R { mutex.withLock { body(&$0) } }
    }

    init(client: ReplayClient, capacity: Int) {
        let (stream, input) = AsyncStream<Loom_Replay_InsertRequest>.makeStream()
        let state = StateBox()
        self.input = input
        self.capacity = Swift.max(1, capacity)
        self.state = state
        let release: @Sendable (_ finished: Bool) -> Void = { finished in
            let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
                if finished { s.done = true } else { s.queued -= 1 }
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume()
        }
        call = Task {
            defer { release(true) }
            return try await client.call("insert") {
                try await client.stub.insert(metadata: client.metadata, options: client.options) { writer in
                    for await message in stream {
                        try await writer.write(message)
                        release(false)
                    }
                }.itemsInserted
            }
        }
    }

    /// Queues `message`; waits while `capacity` messages are queued. Throws the call's error
    /// when it has already failed.
    public func send(_ message: Loom_Replay_InsertRequest) async throws {
        while true {
            let status = state.withLock { s -> SendStatus in
                if s.done { return .failed }
                if s.queued < capacity { s.queued += 1; return .queued }
                return .full
            }
            switch status {
            case .queued:
                input.yield(message)
                return
            case .failed:
                input.finish()
                _ = try await call.value
                throw RPCError(code: .failedPrecondition, message: "insert stream: the call already ended; open a new stream")
            case .full:
                await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { s -> Bool in
                        if s.done || s.queued < capacity { return true }
                        s.waiter = waiter
                        return false
                    }
                    if resumeNow { waiter.resume() }
                }
            }
        }
    }

    private enum SendStatus { case queued, full, failed }

    /// Ends the stream and returns the number of items the server inserted on it.
    public func finish() async throws -> UInt64 {
        input.finish()
        return try await call.value
    }

    /// Ends the stream without waiting for the server's count.
    public func cancelSending() {
        input.finish()
    }

    /// Cancels the call (queued messages are dropped).
    public func cancel() {
        input.finish()
        call.cancel()
    }
}
