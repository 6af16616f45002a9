import XCTest
import Synchronization
import TensorCore

final class AutogradTests: XCTestCase {
    func testScalarBackwardAndLeafAccumulation() {
        let x = try! Tensor([1.0, 2.0, 3.0], shape: [3]).requiringGrad()
        let y = (x * x).sum()  // dy/dx = 2x
        y.backward()
        XCTAssertEqual(x.grad!.doubles(), [2, 4, 6])
        // A second graph accumulates into the same leaf.
        (x * 3.0).sum().backward()
        XCTAssertEqual(x.grad!.doubles(), [5, 7, 9])
        x.zeroGrad()
        XCTAssertNil(x.grad)
    }

    func testExplicitUpstreamGradient() {
        let x = try! Tensor([1.0, -2.0], shape: [2]).requiringGrad()
        let y = x * x * x
        y.backward(try! Tensor([1.0, 10.0], shape: [2]))
        XCTAssertEqual(x.grad!.doubles(), [3, 120])  // 3x^2 * upstream
    }

    func testNoGradRecordsNothingAndDetachCutsHistory() {
        let x = Tensor.ones([2]).requiringGrad()
        let y = noGrad { x * 2.0 }
        XCTAssertFalse(y.requiresGrad)
        let z = (x * 2.0).detached()
        XCTAssertFalse(z.requiresGrad)
        XCTAssertTrue((x * 2.0).requiresGrad)
        XCTAssertFalse(GradMode.isEnabled == false)
    }

    func testValueAndGradAndVJP() {
        let a = try! Tensor([1.0, 2.0], shape: [2])
        let b = try! Tensor([3.0, 4.0], shape: [2])
        let (value, grads) = valueAndGrad(of: [a, b]) { ($0[0] * $0[1]).sum() }
        XCTAssertEqual(value.item(), 11)
        XCTAssertEqual(grads[0].doubles(), [3, 4])
        XCTAssertEqual(grads[1].doubles(), [1, 2])
        // An input the function ignores gets a zero gradient.
        let (_, g2) = valueAndGrad(of: [a, b]) { $0[0].sum() }
        XCTAssertEqual(g2[1].doubles(), [0, 0])
        let (v, vg) = vjp(of: [a], cotangent: try! Tensor([1.0, -1.0], shape: [2])) { $0[0] * $0[0] }
        XCTAssertEqual(v.doubles(), [1, 4])
        XCTAssertEqual(vg[0].doubles(), [2, -4])
    }

    func testRetainGraphAllowsASecondBackward() {
        let x = try! Tensor([2.0], shape: [1]).requiringGrad()
        let y = (x * x).sum()
        y.backward(retainGraph: true)
        y.backward()
        XCTAssertEqual(x.grad!.doubles(), [8])
    }

    func testDiamondGraphSumsBothPaths() {
        // y = a*x + b*x with shared x: dy/dx = a + b.
        let x = try! Tensor([1.0, 1.0], shape: [2]).requiringGrad()
        let h = x * 2.0
        let y = (h * 3.0 + h * h).sum()  // d/dx = 2*(3 + 2h) = 2*(3+4) = 14
        y.backward()
        XCTAssertEqual(x.grad!.doubles(), [14, 14])
    }

    func testTenThousandOpChainDoesNotOverflowTheStack() {
        let x = try! Tensor([1.0], shape: [1]).requiringGrad()
        var y = x
        for _ in 0..<10_000 { y = y * 1.0001 }
        y.sum().backward()
        XCTAssertEqual(x.grad!.item(), Foundation.pow(1.0001, 10_000), accuracy: 1e-9)
        // Freeing a 100,000-node graph must not recurse either.
        var z = x
        for _ in 0..<100_000 { z = z + 1.0 }
        XCTAssertEqual(z.item(), 100_001)
        z = x  // drops the long chain
        XCTAssertTrue(z.requiresGrad)
    }

    func testTensorHookCanReplaceTheGradient() {
        let x = try! Tensor([1.0, 2.0], shape: [2]).requiringGrad()
        let h = x * 2.0
        h.registerHook { g in g * 10.0 }
        h.sum().backward()
        XCTAssertEqual(x.grad!.doubles(), [20, 20])
    }

    func testPostAccumulateHooksFireOnceWhenFinalAndNearestLayerFirst() {
        // Two-layer chain: w2 is nearer the loss, so its gradient is final first.
        let x = Tensor.ones([1, 3], dtype: .float64)
        let w1 = Tensor.full([3, 3], 0.5, dtype: .float64).requiringGrad()
        let w2 = Tensor.full([3, 1], 2.0, dtype: .float64).requiringGrad()
        let order = Mutex<[String]>([])
        w1.registerPostAccumulateGradHook { g in order.withLock { $0.append("w1:\(g.shape)") } }
        w2.registerPostAccumulateGradHook { g in order.withLock { $0.append("w2:\(g.shape)") } }
        // w1 used twice: its hook must still fire once, after both contributions.
        let h = x.matmul(w1).relu() + x.matmul(w1)
        h.matmul(w2).sum().backward()
        XCTAssertEqual(order.withLock { $0 }, ["w2:[3, 1]", "w1:[3, 3]"])
        // d/dw1 = 2 * x^T (1 * w2^T) = 2 * 2 = 4 everywhere.
        XCTAssertEqual(w1.grad!.doubles(), [Double](repeating: 4, count: 9))
    }

    func testRemovedHookDoesNotFire() {
        let x = Tensor.ones([2], dtype: .float64).requiringGrad()
        let fired = Mutex(0)
        let handle = x.registerPostAccumulateGradHook { _ in fired.withLock { $0 += 1 } }
        x.removeHook(handle)
        (x * 2.0).sum().backward()
        XCTAssertEqual(fired.withLock { $0 }, 0)
        XCTAssertEqual(x.grad!.doubles(), [2, 2])
    }

    func testGradientsOfFloat32MatchFloat64() {
        let a64 = Tensor.randn([4, 5], dtype: .float64, generator: Generator(seed: 3))
        let a32 = a64.to(.float32)
        let (_, g64) = valueAndGrad(of: [a64]) { ($0[0] * $0[0]).tanh().sum() }
        let (_, g32) = valueAndGrad(of: [a32]) { ($0[0] * $0[0]).tanh().sum() }
        for (p, q) in zip(g64[0].doubles(), g32[0].doubles()) { XCTAssertEqual(p, q, accuracy: 1e-5) }
    }
}

import Foundation
