import Foundation
import Synchronization
import XCTest
@testable import ReplayStorage
import TensorCore

/// A value shared between a test and a thread it starts.
final class Locked<T: Sendable>: Sendable {
    let mutex: Mutex<T>
    init(_ value: T) { mutex = Mutex(value) }
    var value: T {
        get { mutex.withLock { $0 } }
        set { mutex.withLock { $0 = newValue } }
    }
}

/// Runs `body` on a new thread; the returned semaphore is signalled when it ends.
func runOnThread(_ body: @escaping @Sendable () -> Void) -> DispatchSemaphore {
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        body()
        done.signal()
    }
    return done
}

/// A chunk of `steps` steps of one float32 column with values `base, base + 1, ...`
/// (shape [steps, width]).
func floatChunk(_ key: UInt64, steps: Int, width: Int = 2, base: Float = 0) -> Chunk {
    let values = (0..<(steps * width)).map { base + Float($0) }
    return try! Chunk(key: key, columns: [try! Tensor(values, shape: [steps, width])])
}

/// A one-step item with its own chunk.
func simpleItem(_ key: UInt64, table: String, priority: Double = 1) -> ReplayItem {
    ReplayItem(key: key, table: table, priority: priority, chunks: [floatChunk(key, steps: 1)])
}

/// A table with a MinSize(1) limiter and the given selectors.
func makeTable(_ name: String = "t", sampler: SelectorConfig, remover: SelectorConfig = .fifo, maxSize: Int = 1000,
               maxTimesSampled: Int = 0, seed: UInt64 = 7) -> ReplayTable {
    try! ReplayTable(config: TableConfig(name: name, sampler: sampler, remover: remover, maxSize: maxSize,
                                         maxTimesSampled: maxTimesSampled, rateLimiter: try! .minSize(1), seed: seed))
}

/// Asserts that `body` throws a `ReplayError` of `kind` whose message is `message` (when given).
func assertReplayError<T>(_ kind: ReplayError.Kind, _ message: String? = nil, file: StaticString = #filePath, line: UInt = #line,
                          _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("expected a \(kind) error, nothing was thrown", file: file, line: line)
    } catch let error as ReplayError {
        XCTAssertEqual(error.kind, kind, "message: \(error.message)", file: file, line: line)
        if let message { XCTAssertEqual(error.message, message, file: file, line: line) }
    } catch {
        XCTFail("expected a ReplayError, found \(error)", file: file, line: line)
    }
}

/// Pearson's chi-square statistic of `observed` counts against `expected` probabilities.
func chiSquare(observed: [Int], expected: [Double]) -> Double {
    let n = Double(observed.reduce(0, +))
    var x = 0.0
    for (o, p) in zip(observed, expected) where p > 0 {
        let e = n * p
        x += (Double(o) - e) * (Double(o) - e) / e
    }
    return x
}

/// A fresh empty temporary directory.
func makeTempDirectory() -> String {
    let dir = NSTemporaryDirectory() + "/loom-replay-tests-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

extension ReplayTable {
    /// `insert` with a 5 s deadline, so a rate limiter bug fails a test instead of hanging it.
    func insertBounded(_ item: ReplayItem) throws(ReplayError) { try insert(item, timeout: .seconds(5)) }
}

extension ReplayServer {
    /// `insert` with a 5 s deadline, so a rate limiter bug fails a test instead of hanging it.
    func insertBounded(_ item: ReplayItem) throws(ReplayError) { try insert(item, timeout: .seconds(5)) }
}
