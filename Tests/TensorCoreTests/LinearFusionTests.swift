import XCTest
import TensorCore

/// `Tensor.linear` and its fused weight-gradient accumulation (a GEMM with beta = 1 into
/// the existing `.grad`): the values equal the unfused computation, hooks fire as for any
/// leaf, and no weight-sized temporary is allocated on later contributions.
final class LinearFusionTests: XCTestCase {
    private func randn(_ shape: [Int], seed: UInt64) -> Tensor {
        Tensor.randn(shape, generator: Generator(seed: seed))
    }

    func testForwardMatchesMatmulOnLeadingDimensions() {
        let x = randn([2, 3, 5], seed: 1), w = randn([4, 5], seed: 2), b = randn([4], seed: 3)
        let y = x.linear(w, bias: b)
        XCTAssertEqual(y.shape, [2, 3, 4])
        let ref = x.matmul(w.transposed(0, 1)) + b
        XCTAssertLessThan((y - ref).abs().amax().item(), 1e-5)
    }

    /// Three backward passes into one weight (gradient accumulation): the fused sum equals the
    /// unfused one up to rounding (a beta = 1 GEMM orders its additions differently).
    func testAccumulatedGradientEqualsUnfusedBitwise() {
        let w0 = randn([16, 32], seed: 4), b0 = randn([16], seed: 5)
        let xs = [randn([8, 32], seed: 6), randn([8, 32], seed: 7), randn([8, 32], seed: 8)]
        let fused = w0.requiringGrad(), fusedB = b0.requiringGrad()
        let plain = w0.requiringGrad(), plainB = b0.requiringGrad()
        for x in xs {
            enableGrad { x.linear(fused, bias: fusedB).tanh().sum() }.backward()
            enableGrad { (x.matmul(plain.transposed(0, 1)) + plainB).tanh().sum() }.backward()
        }
        let scale = plain.grad!.abs().amax().item()
        XCTAssertLessThan((fused.grad! - plain.grad!).abs().amax().item(), 1e-6 * scale)
        XCTAssertEqual(fusedB.grad!.scalars(as: Float.self), plainB.grad!.scalars(as: Float.self))
    }

    /// Post-accumulate hooks (data parallelism starts communication there) fire once per
    /// backward, after the fused write, and see the final gradient.
    func testPostAccumulateHookFiresOnceWithTheFinalGradient() {
        let w = randn([6, 3], seed: 9).requiringGrad()
        let seen = HookLog()
        w.registerPostAccumulateGradHook { g in seen.append(g.sum().item()) }
        let x = randn([5, 3], seed: 10)
        enableGrad { x.linear(w).sum() }.backward()
        enableGrad { x.linear(w).sum() }.backward()
        XCTAssertEqual(seen.values.count, 2)
        XCTAssertEqual(seen.values[1], w.grad!.sum().item(), accuracy: 1e-4)
        XCTAssertEqual(seen.values[1], 2 * seen.values[0], accuracy: 1e-4)
    }

    /// A tensor hook must see each contribution, so fusion steps aside and the hook's
    /// replacement is what accumulates.
    func testTensorHookDisablesFusionAndSeesTheContribution() {
        let w = randn([4, 3], seed: 11).requiringGrad()
        let seen = HookLog()
        w.registerHook { g in seen.append(g.sum().item()); return g * 2 }
        let x = randn([5, 3], seed: 12)
        enableGrad { x.linear(w).sum() }.backward()
        XCTAssertEqual(seen.values.count, 1)
        let expected = x.sum(dim: 0).unsqueezed(dim: 0).expand([4, 3]) * 2
        XCTAssertLessThan((w.grad! - expected).abs().amax().item(), 1e-5)
    }

    /// The point of the fusion: a later micro-batch adds into `.grad` without a weight-sized
    /// temporary. The first backward allocates the gradient itself (charged as gradients).
    func testLaterContributionsAllocateNoWeightSizedTemporary() {
        let w = randn([512, 256], seed: 13).requiringGrad()  // 512 KiB
        let x = randn([4, 256], seed: 14)
        enableGrad { x.linear(w).sum() }.backward()
        XCTAssertEqual(w.grad?.shape, [512, 256])
        let loss = enableGrad { x.linear(w).sum() }
        Memory.resetPeak()
        let before = Memory.stats().current
        loss.backward()
        let weightBytes = 512 * 256 * 4
        XCTAssertLessThan(Memory.stats().peak - before, weightBytes / 2,
                          "the second backward allocated a weight-sized temporary")
    }

    /// Inside a checkpointed segment the parameter is a fresh leaf; the checkpoint node
    /// moves the real `.grad` to it for the recomputed backward, so the fused GEMM still
    /// adds in place: the accumulated gradient equals the plain run's (up to rounding) and
    /// a later micro-batch allocates no weight-sized temporary. A tensor hook on the weight
    /// turns the in-place path off and sees each contribution.
    func testCheckpointedSegmentAccumulatesInPlace() {
        let w0 = randn([512, 256], seed: 15), b0 = randn([512], seed: 16)
        let xs = [randn([4, 256], seed: 17), randn([4, 256], seed: 18)]
        let plain = w0.requiringGrad(), plainB = b0.requiringGrad()
        let ck = w0.requiringGrad(), ckB = b0.requiringGrad()
        for x in xs {
            enableGrad { x.linear(plain, bias: plainB).tanh().sum() }.backward()
        }
        enableGrad { checkpoint([xs[0], ck, ckB]) { t in t[0].linear(t[1], bias: t[2]).tanh() }.sum() }.backward()
        let loss = enableGrad { checkpoint([xs[1], ck, ckB]) { t in t[0].linear(t[1], bias: t[2]).tanh() }.sum() }
        Memory.resetPeak()
        let before = Memory.stats().current
        loss.backward()
        let weightBytes = 512 * 256 * 4
        XCTAssertLessThan(Memory.stats().peak - before, weightBytes / 2, "the checkpointed backward allocated a weight-sized temporary")
        let scale = plain.grad!.abs().amax().item()
        XCTAssertLessThan((ck.grad! - plain.grad!).abs().amax().item(), 1e-6 * scale)
        XCTAssertLessThan((ckB.grad! - plainB.grad!).abs().amax().item(), 1e-6 * plainB.grad!.abs().amax().item())

        let hooked = w0.requiringGrad()
        let seen = HookLog()
        hooked.registerHook { g in seen.append(g.abs().sum().item()); return nil }
        for x in xs {
            enableGrad { checkpoint([x, hooked, ckB.detached()]) { t in t[0].linear(t[1], bias: t[2]).tanh() }.sum() }.backward()
        }
        XCTAssertEqual(seen.values.count, 2, "the hook sees each contribution")
        XCTAssertLessThan((hooked.grad! - plain.grad!).abs().amax().item(), 1e-6 * scale)
    }

    /// Autocast's mixed call: half input, Float32 master weight and bias. The output is half;
    /// the weight and bias gradients are Float32 and equal the Float32 computation on the
    /// same (half-valued) input; no weight-sized temporary in forward or backward.
    func testMixedPrecisionCallKeepsFloat32GradientsWithoutWeightCopies() {
        for half in [DType.float16, .bfloat16] {
            let x = randn([6, 256], seed: 15).to(half)
            let w0 = randn([512, 256], seed: 16), b0 = randn([512], seed: 17)
            let w = w0.requiringGrad(), b = b0.requiringGrad()
            let wr = w0.requiringGrad(), br = b0.requiringGrad()
            let xr = x.to(.float32)
            for pass in 0..<2 {
                Memory.resetPeak()
                let before = Memory.stats().current
                let y = enableGrad { x.linear(w, bias: b) }
                XCTAssertEqual(y.dtype, half)
                enableGrad { y.to(.float32).tanh().sum() }.backward()
                // The first pass allocates the Float32 gradients themselves (weight + bias).
                let allowed = (pass == 0 ? (512 * 256 + 512) * 4 : 0) + 512 * 256 * 4 / 2
                XCTAssertLessThan(Memory.stats().peak - before, allowed, "\(half), pass \(pass): a weight-sized temporary")
                enableGrad { xr.linear(wr, bias: br).to(half).to(.float32).tanh().sum() }.backward()
            }
            XCTAssertEqual(w.grad!.dtype, .float32)
            let scale = wr.grad!.abs().amax().item()
            XCTAssertLessThan((w.grad! - wr.grad!).abs().amax().item(), 1e-5 * scale, "\(half) weight gradient")
            XCTAssertLessThan((b.grad! - br.grad!).abs().amax().item(), 1e-5 * b.grad!.abs().amax().item(), "\(half) bias gradient")
        }
    }
}

private final class HookLog: @unchecked Sendable {
    private var stored: [Double] = []
    private let lock = NSLock()
    func append(_ v: Double) { lock.lock(); stored.append(v); lock.unlock() }
    var values: [Double] { lock.lock(); defer { lock.unlock() }; return stored }
}
