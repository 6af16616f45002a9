import XCTest
import Foundation
@testable import TensorCore

/// `TensorStorage.releaseBytes(note:)` / `rematerialize()`: exact accounting, the same
/// storage object seen by views and by tensors captured in VJPs, and a clear trap on a
/// read of released bytes (checked in a child process, since a trap ends the process).
final class TensorStorageReleaseTests: XCTestCase {
    func testReleaseAndRematerializeAccountExactly() {
        let base = Memory.stats()
        let t = Memory.withTag(.parameters) { Tensor.ones([10, 10]) }
        let s = t.storageBlock
        XCTAssertEqual(s.byteCount, 400)
        let allocated = Memory.stats()
        XCTAssertEqual(allocated.current(.parameters) - base.current(.parameters), 400)
        let serial = s.serial
        s.releaseBytes(note: "test block")
        XCTAssertTrue(s.isReleased)
        let released = Memory.stats()
        XCTAssertEqual(released.current(.parameters), base.current(.parameters))
        XCTAssertEqual(released.current, allocated.current - 400)
        XCTAssertEqual(released.liveAllocations, allocated.liveAllocations - 1)
        s.rematerialize()
        XCTAssertFalse(s.isReleased)
        let back = Memory.stats()
        XCTAssertEqual(back.current(.parameters) - base.current(.parameters), 400)
        XCTAssertEqual(back.liveAllocations, allocated.liveAllocations)
        XCTAssertEqual(back.totalAllocations, released.totalAllocations + 1)
        XCTAssertGreaterThan(s.serial, serial, "a rematerialised block is a new allocation")
        XCTAssertTrue(t.storageBlock === s)
    }

    func testReleasedStorageIsFreedOnceAndRetagsWithoutCharge() {
        let base = Memory.stats()
        do {
            let t = Memory.withTag(.parameters) { Tensor.zeros([3, 5], dtype: .float64) }
            t.storageBlock.releaseBytes(note: "x")
            t.storageBlock.retag(.gradients)  // released: nothing is charged or moved
            XCTAssertEqual(Memory.stats().current(.parameters), base.current(.parameters))
            XCTAssertEqual(Memory.stats().current(.gradients), base.current(.gradients))
            t.storageBlock.rematerialize()
            XCTAssertEqual(Memory.stats().current(.gradients) - base.current(.gradients), 120, "charged to the new tag")
            t.storageBlock.releaseBytes(note: "x")
        }
        // Deinit of a released block frees nothing a second time.
        let end = Memory.stats()
        XCTAssertEqual(end.current, base.current)
        XCTAssertEqual(end.current(.gradients), base.current(.gradients))
        XCTAssertEqual(end.liveAllocations, base.liveAllocations)
    }

    /// The point of the API: a VJP that captured the weight (here `Tensor.linear`'s detached
    /// view) reads the values written into the rematerialised bytes, and views see them too.
    func testCapturedWeightSeesRematerialisedValues() throws {
        let w = try Tensor([1, 2, 3, 4] as [Float], shape: [2, 2]).requiringGrad()
        let x = try Tensor([1, 1] as [Float], shape: [1, 2]).requiringGrad()
        let y = x.linear(w)
        XCTAssertEqual(y.scalars(as: Float.self), [3, 7])
        let view = w.transposed(0, 1)
        let s = w.storageBlock
        s.releaseBytes(note: "w")
        s.rematerialize()
        let p = s.pointer.assumingMemoryBound(to: Float.self)
        for (i, v) in [10, 20, 30, 40].enumerated() { p[i] = Float(v) }
        y.sum().backward()
        // dL/dx = 1ᵀ W with the new W: [10 + 30, 20 + 40].
        XCTAssertEqual(x.grad?.scalars(as: Float.self), [40, 60])
        XCTAssertEqual(w.grad?.scalars(as: Float.self), [1, 1, 1, 1])
        XCTAssertEqual(view.scalars(as: Float.self), [10, 30, 20, 40])
    }

    /// Reading released bytes traps with a message that names the block and the owner's note.
    func testReadingReleasedBytesTraps() throws {
        if ProcessInfo.processInfo.environment["LOOM_STORAGE_TRAP_CHILD"] == "1" {
            let t = Tensor.ones([4])
            t.storageBlock.releaseBytes(note: "the test's released block")
            let u = t + 1  // must trap, not read freed memory
            print("unreachable: \(u)")
            return
        }
        let (status, output) = try runSelf(test: "TensorCoreTests.TensorStorageReleaseTests/testReadingReleasedBytesTraps",
                                           environment: ["LOOM_STORAGE_TRAP_CHILD": "1"])
        XCTAssertNotEqual(status, 0, output)
        XCTAssertTrue(output.contains("16 bytes"), output)
        XCTAssertTrue(output.contains("an op read its bytes while they are released (the test's released block)"), output)
        XCTAssertFalse(output.contains("unreachable"), output)
    }
}

/// Runs this test binary again on one test with extra environment; returns the exit
/// status and the combined output.
func runSelf(test: String, environment: [String: String]) throws -> (Int32, String) {
    guard let binary = CommandLine.arguments.first(where: { $0.hasSuffix(".xctest") }) ?? CommandLine.arguments.first else {
        throw XCTSkip("cannot find the test binary")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = [test]
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    env["SWIFT_BACKTRACE"] = "enable=no"
    process.environment = env
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
