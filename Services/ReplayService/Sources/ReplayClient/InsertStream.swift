import GRPCCore
import GRPCProtobuf
import ReplayService
import ReplayServiceProto
import Synchronization

/// One open InsertStream call: `send` queues a message (waiting only while `capacity`
/// messages are queued and not yet handed to gRPC); the server confirms the items of each
/// message by key once they are in their tables; `waitForConfirmations` waits for them
/// without ending the call (Reverb's writer flush), `finish` ends the stream and returns how
/// many items the server confirmed. Several messages are in flight at once; nothing waits
/// for a per-message round trip.
///
/// When the call fails (a rejected item, a lost connection), the next `send`, `finish` or
/// `waitForConfirmations` throws its error; `confirmedKeys` then holds exactly the items
/// that are in their tables. Use from one task at a time.
public final class InsertStream: Sendable {
    private let input: AsyncStream<Loom_Replay_InsertRequest>.Continuation
    private let call: Task<Void, any Error>
    private let state: StateBox
    private let capacity: Int

    private struct State {
        var queued = 0
        var done = false
        var waiter: CheckedContinuation<Void, Never>?
        /// Items in messages queued so far.
        var itemsSent = 0
        /// Keys confirmed by the server, in order.
        var confirmed: [UInt64] = []
        /// A `waitForConfirmations` waiting until `confirmed.count >= target`.
        var confirmationWaiter: (target: Int, continuation: CheckedContinuation<Void, Never>)?
    }

    /// The shared state, in a class so the call's task can hold it.
    private final class StateBox: Sendable {
        let mutex = Mutex(State())
        func withLock<R>(_ body: (inout State) -> R) -> R { mutex.withLock { body(&$0) } }
    }

    init(client: ReplayClient, capacity: Int, deadline: Duration? = nil) {
        let (stream, input) = AsyncStream<Loom_Replay_InsertRequest>.makeStream()
        let state = StateBox()
        self.input = input
        self.capacity = Swift.max(1, capacity)
        self.state = state
        let release: @Sendable (_ finished: Bool) -> Void = { finished in
            let (waiter, confirmationWaiter) = state.withLock { s in
                if finished { s.done = true } else { s.queued -= 1 }
                defer { s.waiter = nil }
                var cw: CheckedContinuation<Void, Never>?
                if finished { cw = s.confirmationWaiter?.continuation; s.confirmationWaiter = nil }
                return (s.waiter, cw)
            }
            waiter?.resume()
            confirmationWaiter?.resume()
        }
        let confirm: @Sendable ([UInt64]) -> Void = { keys in
            let waiter: CheckedContinuation<Void, Never>? = state.withLock { s in
                s.confirmed += keys
                guard let w = s.confirmationWaiter, s.confirmed.count >= w.target else { return nil }
                s.confirmationWaiter = nil
                return w.continuation
            }
            waiter?.resume()
        }
        let request = StreamingClientRequest<Loom_Replay_InsertRequest>(metadata: client.metadata) { writer in
            for await message in stream {
                try await writer.write(message)
                release(false)
            }
        }
        let options = client.options(deadline: deadline)
        call = Task {
            defer { release(true) }
            try await client.call("insert", deadline: deadline) {
                try await client.grpc.bidirectionalStreaming(
                    request: request,
                    descriptor: Loom_Replay_ReplayService.Method.InsertStream.descriptor,
                    serializer: InsertRequestSerializer(),
                    deserializer: ProtobufDeserializer<Loom_Replay_InsertConfirmation>(),
                    options: options
                ) { response in
                    for try await c in response.messages { confirm(c.keys) }
                }
            }
        }
    }

    /// Queues `message`; waits while `capacity` messages are queued. Throws the call's error
    /// when it has already failed.
    public func send(_ message: Loom_Replay_InsertRequest) async throws {
        while true {
            let status = state.withLock { s -> SendStatus in
                if s.done { return .failed }
                if s.queued < capacity {
                    s.queued += 1
                    s.itemsSent += message.items.count
                    return .queued
                }
                return .full
            }
            switch status {
            case .queued:
                input.yield(message)
                return
            case .failed:
                input.finish()
                try await call.value
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

    /// Whether the call has ended (after an error, or after `finish`).
    public var hasEnded: Bool { state.withLock { $0.done } }

    /// Items sent on this stream so far (queued or handed to gRPC).
    public var itemsSent: Int { state.withLock { $0.itemsSent } }

    /// The keys the server confirmed so far (every one is in its table), in order.
    public var confirmedKeys: [UInt64] { state.withLock { $0.confirmed } }

    /// Waits until all but `pending` of the items sent are confirmed (the stream stays
    /// open); returns the confirmed keys. Throws the call's error when it ended first, and
    /// `deadlineExceeded` after `timeout` (nil = no limit; the items stay in flight).
    @discardableResult
    public func waitForConfirmations(leaving pending: Int = 0, timeout: Duration? = nil) async throws -> [UInt64] {
        let target = Swift.max(0, state.withLock { $0.itemsSent } - Swift.max(0, pending))
        _ = try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask { [state] in
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                        let now = state.withLock { s -> Bool in
                            if s.done || s.confirmed.count >= target || Task.isCancelled { return true }
                            s.confirmationWaiter = (target, c)
                            return false
                        }
                        if now { c.resume() }
                    }
                } onCancel: {
                    let c = state.withLock { s -> CheckedContinuation<Void, Never>? in
                        defer { s.confirmationWaiter = nil }
                        return s.confirmationWaiter?.continuation
                    }
                    c?.resume()
                }
                return true
            }
            if let timeout {
                group.addTask {
                    try? await Task.sleep(for: timeout)
                    return false
                }
            }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        let (count, done) = state.withLock { ($0.confirmed.count, $0.done) }
        if count >= target { return confirmedKeys }
        if done {
            try await call.value
            throw RPCError(code: .internalError,
                           message: "insert stream: the call ended with \(count) of \(target) items confirmed")
        }
        throw RPCError(code: .deadlineExceeded,
                       message: "insert stream: \(count) of \(target) items confirmed after \(timeout.map { "\($0)" } ?? "-")")
    }

    /// Ends the stream and returns the number of items the server confirmed on it.
    public func finish() async throws -> UInt64 {
        input.finish()
        try await call.value
        return UInt64(state.withLock { $0.confirmed.count })
    }

    /// Ends the stream without waiting for the server.
    public func cancelSending() {
        input.finish()
    }

    /// Cancels the call (queued messages are dropped).
    public func cancel() {
        input.finish()
        call.cancel()
    }
}
