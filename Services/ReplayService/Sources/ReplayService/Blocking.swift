import Foundation
import ReplayStorage

/// Runs a blocking `ReplayServer` call on a thread of `BlockingPool.shared`, so that a
/// sample or insert waiting on a rate limiter never holds a Swift concurrency or NIO
/// event-loop thread.
///
/// Cancelling the awaiting task does not interrupt the call: it returns at its timeout or
/// when the `ReplayServer` is closed.
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () throws(ReplayError) -> T) async throws(ReplayError) -> T {
    let result: Result<T, ReplayError> = await withCheckedContinuation { continuation in
        BlockingPool.shared.submit {
            let result: Result<T, ReplayError>
            do throws(ReplayError) {
                result = .success(try body())
            } catch {
                result = .failure(error)
            }
            return { continuation.resume(returning: result) }
        }
    }
    return try result.get()
}

/// A pool of threads for calls that may block: a job goes to an idle thread, or to a new
/// thread when none is idle or about to look for work, so a blocked call never delays
/// another (the pool grows with the number of calls blocked at once). Idle threads beyond
/// `maxIdle` exit.
///
/// A job returns its completion (resuming the awaiting task), which the thread runs after
/// counting itself as `finishing`: work submitted by the resumed task then goes to that
/// thread instead of starting a new one, so sequential calls reuse one thread.
///
/// Why a pool: the service first started a `Thread` per call; at one insert or one sample
/// per call that cost ~30-60 µs and two context switches each. Handing a job to a parked
/// thread costs one mutex and one signal.
///
/// Concurrency: all state is guarded by `condition`'s mutex. `@unchecked Sendable` because
/// NSCondition is used only under that contract.
final class BlockingPool: @unchecked Sendable {
    /// The process-wide pool.
    static let shared = BlockingPool(maxIdle: 8)

    typealias Job = @Sendable () -> (@Sendable () -> Void)

    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var head = 0
    private var idle = 0
    private var finishing = 0
    private var threads = 0
    private var created = 0
    private let maxIdle: Int

    init(maxIdle: Int) { self.maxIdle = maxIdle }

    /// Threads alive and threads ever started (for tests and diagnostics).
    var threadCounts: (alive: Int, created: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (threads, created)
    }

    /// Queues `job`; starts a thread when no idle or finishing thread will take it.
    func submit(_ job: @escaping Job) {
        condition.lock()
        jobs.append(job)
        let waiting = jobs.count - head
        if waiting > idle + finishing {
            threads += 1
            created += 1
            condition.unlock()
            let thread = Thread { [self] in work() }
            thread.name = "loom-replay-blocking"
            thread.start()
        } else {
            condition.signal()
            condition.unlock()
        }
    }

    private func work() {
        condition.lock()
        while true {
            if head < jobs.count {
                let job = jobs[head]
                head += 1
                if head == jobs.count { jobs.removeAll(keepingCapacity: true); head = 0 }
                condition.unlock()
                let completion = job()
                condition.lock()
                finishing += 1
                condition.unlock()
                completion()
                condition.lock()
                finishing -= 1
                continue
            }
            if idle >= maxIdle {
                threads -= 1
                condition.unlock()
                return
            }
            idle += 1
            condition.wait()
            idle -= 1
        }
    }
}
