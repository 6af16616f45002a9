#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One mutex and two condition variables (can-insert, can-sample) on the monotonic clock.
///
/// `@unchecked Sendable`: the pthread objects are heap-allocated once, never moved, and are
/// designed to be used from many threads; all state they protect lives in the owning table.
final class TableSync: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let insertCond: UnsafeMutablePointer<pthread_cond_t>
    private let sampleCond: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        insertCond = .allocate(capacity: 1)
        sampleCond = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        #if !canImport(Darwin)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        #endif
        pthread_cond_init(insertCond, &attr)
        pthread_cond_init(sampleCond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(insertCond)
        pthread_cond_destroy(sampleCond)
        pthread_mutex_destroy(mutex)
        insertCond.deallocate()
        sampleCond.deallocate()
        mutex.deallocate()
    }

    @inline(__always) func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) func unlock() { pthread_mutex_unlock(mutex) }

    /// Runs `body` holding the lock.
    @inline(__always)
    func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    enum Waiter { case insert, sample }

    /// Waits (lock held) until signalled, `deadline` (monotonic nanoseconds) passes, or a
    /// spurious wake-up; callers re-check their condition and the deadline in a loop.
    func wait(_ w: Waiter, deadline: UInt64?) {
        let cond = w == .insert ? insertCond : sampleCond
        guard let deadline else {
            pthread_cond_wait(cond, mutex)
            return
        }
        #if canImport(Darwin)
        // Darwin has no monotonic condattr clock: wait for the remaining time instead.
        let now = TableSync.now()
        guard deadline > now else { return }
        let left = deadline - now
        var ts = timespec(tv_sec: Int(left / 1_000_000_000), tv_nsec: Int(left % 1_000_000_000))
        pthread_cond_timedwait_relative_np(cond, mutex, &ts)
        #else
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_cond_timedwait(cond, mutex, &ts)
        #endif
    }

    func broadcastInsert() { pthread_cond_broadcast(insertCond) }
    func broadcastSample() { pthread_cond_broadcast(sampleCond) }

    /// Monotonic clock in nanoseconds.
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// The monotonic deadline `timeout` from now (nil = none, i.e. wait for ever).
    static func deadline(after timeout: Duration?) -> UInt64? {
        guard let timeout else { return nil }
        let (s, atto) = timeout.components
        if s < 0 || (s == 0 && atto <= 0) { return now() }
        let ns = UInt64(clamping: s) &* 1_000_000_000 &+ UInt64(atto / 1_000_000_000)
        return now() &+ Swift.min(ns, UInt64.max / 4)
    }
}
