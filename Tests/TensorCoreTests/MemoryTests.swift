import XCTest
import TensorCore

final class MemoryTests: XCTestCase {
    func testPeakAndCurrentFollowAKnownSequence() {
        Memory.resetPeak()
        let base = Memory.stats()
        var a: Tensor? = Tensor.zeros([1000])                // 4,000 bytes
        let b = Tensor.zeros([1000], dtype: .float64)        // 8,000 bytes
        XCTAssertEqual(Memory.stats().current - base.current, 12_000)
        a = nil                                              // free 4,000
        let c = Tensor.zeros([500], dtype: .float16)         // 1,000 bytes
        let s = Memory.stats()
        XCTAssertEqual(s.current - base.current, 9_000)
        XCTAssertEqual(s.peak - base.current, 12_000)
        XCTAssertNil(a)
        XCTAssertEqual(b.count + c.count, 1500)
    }

    func testTagsChargeTheRightBucketAndRetagMovesBytes() {
        Memory.resetPeak()
        let base = Memory.stats()
        let act = Memory.withTag(.activations) { Tensor.ones([256]) }   // 1,024 bytes
        let w = Memory.withTag(.workspace) { Tensor.ones([64], dtype: .float64) }  // 512 bytes
        var s = Memory.stats()
        XCTAssertEqual(s.current(.activations) - base.current(.activations), 1024)
        XCTAssertEqual(s.current(.workspace) - base.current(.workspace), 512)
        act.storageBlock.retag(.parameters)
        s = Memory.stats()
        XCTAssertEqual(s.current(.activations) - base.current(.activations), 0)
        XCTAssertEqual(s.current(.parameters) - base.current(.parameters), 1024)
        XCTAssertEqual(s.peak(.activations) - base.current(.activations), 1024)
        XCTAssertEqual(w.count, 64)
    }

    func testViewsShareStorageAndCostNothing() {
        let t = Tensor.zeros([10, 10])
        let before = Memory.stats().current
        let v = t.transposed(0, 1).narrowed(dim: 0, start: 2, length: 3)
        XCTAssertEqual(Memory.stats().current, before)
        XCTAssertTrue(v.storageBlock === t.storageBlock)
    }

    func testGradientsAreChargedToGradients() {
        let base = Memory.stats().current(.gradients)
        let x = Tensor.ones([100]).requiringGrad()
        (x * 2.0).sum().backward()
        XCTAssertEqual(Memory.stats().current(.gradients) - base, 400)
        x.zeroGrad()
        XCTAssertEqual(Memory.stats().current(.gradients) - base, 0)
    }
}
