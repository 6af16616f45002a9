import Foundation
import ReplayStorage

/// Runs a blocking `ReplayServer` call on a thread of its own, so that a sample or insert
/// waiting on a rate limiter never holds a Swift concurrency or NIO event-loop thread.
///
/// A thread per call costs tens of microseconds; the calls it serves (gRPC messages) cost
/// more. Cancelling the awaiting task does not interrupt the call: it returns at its timeout
/// or when the `ReplayServer` is closed.
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () throws(ReplayError) -> T) async throws(ReplayError) -> T {
    let result: Result<T, ReplayError> = await withCheckedContinuation { continuation in
        let thread = Thread {
            do throws(ReplayError) {
                continuation.resume(returning: .success(try body()))
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
        thread.name = "loom-replay-blocking"
        thread.start()
    }
    return try result.get()
}
