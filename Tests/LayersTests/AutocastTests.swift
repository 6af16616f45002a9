import XCTest
@testable import Layers
import TensorCore

/// Autocast (mixed precision) rules of the layers, checked against Float32 oracles.
///
/// Tolerances (normwise: max |half − fp32| / max |fp32| over the tensor): Float16 2e-3,
/// BFloat16 2e-2. Float16 rounds to 2⁻¹¹ ≈ 4.9e-4 relative and BFloat16 to 2⁻⁸ ≈ 3.9e-3; a
/// layer rounds its input, its weight copy and its output, and gradients add one more
/// rounding of the output gradient, so errors of 2–4 roundings are expected.
final class AutocastTests: XCTestCase {
    static let tolerance: [HalfPrecision: Double] = [.float16: 2e-3, .bfloat16: 2e-2]

    /// max |a − b| / max |b|.
    func normwiseError(_ a: Tensor, _ b: Tensor) -> Double {
        let x = a.doubles(), y = b.doubles()
        precondition(x.count == y.count)
        var num = 0.0, den = 0.0
        for i in 0..<x.count {
            num = Swift.max(num, Swift.abs(x[i] - y[i]))
            den = Swift.max(den, Swift.abs(y[i]))
        }
        return num / Swift.max(den, 1e-30)
    }

    /// ⟨a, b⟩ / (|a| |b|).
    func cosine(_ a: Tensor, _ b: Tensor) -> Double {
        let x = a.doubles(), y = b.doubles()
        var dot = 0.0, nx = 0.0, ny = 0.0
        for i in 0..<x.count { dot += x[i] * y[i]; nx += x[i] * x[i]; ny += y[i] * y[i] }
        return dot / Swift.max((nx * ny).squareRoot(), 1e-300)
    }

    func assertClose(_ a: Tensor, _ b: Tensor, _ p: HalfPrecision, _ what: String, scale: Double = 1,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.shape, b.shape, what, file: file, line: line)
        let e = normwiseError(a, b), tol = Self.tolerance[p]! * scale
        XCTAssertLessThanOrEqual(e, tol, "\(what) (\(p)): normwise error \(e) above \(tol)", file: file, line: line)
    }

    /// Loss = Σ y ⊙ r in Float32 for a fixed random r: its gradient with respect to y is r.
    func probeLoss(_ y: Tensor, seed: UInt64 = 99) -> Tensor {
        let r = Tensor.randn(y.shape, generator: Generator(seed: seed))
        return (y.to(.float32) * r).sum()
    }

    // MARK: Policy

    func testPolicyIsTaskLocalAndNests() {
        XCTAssertNil(Autocast.policy)
        withAutocast(.float16) {
            XCTAssertEqual(Autocast.policy, AutocastPolicy(.float16))
            withAutocast(.bfloat16, halfBatchNorm: true) {
                XCTAssertEqual(Autocast.policy?.dtype, .bfloat16)
                XCTAssertEqual(Autocast.policy?.halfBatchNorm, true)
                withoutAutocast { XCTAssertFalse(Autocast.isEnabled) }
            }
            XCTAssertEqual(Autocast.policy?.dtype, .float16)
        }
        XCTAssertNil(Autocast.policy)
        // narrow: only Float32 is narrowed; widen: only half types are widened.
        let f64 = Tensor([1.0, 2.0]), f32 = Tensor([Float(1), 2])
        XCTAssertEqual(Autocast.narrow(f32).dtype, .float32)  // off
        withAutocast(.bfloat16) {
            XCTAssertEqual(Autocast.narrow(f32).dtype, .bfloat16)
            XCTAssertEqual(Autocast.narrow(f64).dtype, .float64)
        }
        withAutocast(.bfloat16) { XCTAssertEqual(Autocast.narrow(f32.to(.float16)).dtype, .bfloat16, "the other half type is converted") }
        XCTAssertEqual(Autocast.widen(f32.to(.float16)).dtype, .float32)
        XCTAssertEqual(Autocast.widen(f64).dtype, .float64)
    }

    // MARK: Linear and Conv2d

    func testLinearForwardAndGradientsCloseToFloat32() {
        for p in HalfPrecision.allCases {
            let lin = Linear(37, 19, generator: Generator(seed: 1))
            let x = Tensor.randn([8, 37], generator: Generator(seed: 2)).requiringGrad()
            let y32 = lin(x)
            probeLoss(y32).backward()
            let (gw32, gb32, gx32) = (lin.weight.grad!, lin.bias!.grad!, x.grad!)
            lin.zeroGrad(); x.zeroGrad()

            let yh = withAutocast(p) { lin(x) }
            XCTAssertEqual(yh.dtype, p.dtype, "Linear under autocast returns \(p)")
            assertClose(yh, y32, p, "Linear output")
            probeLoss(yh).backward()
            XCTAssertEqual(lin.weight.grad?.dtype, .float32, "master weight gradient stays Float32")
            XCTAssertEqual(x.grad?.dtype, .float32)
            assertClose(lin.weight.grad!, gw32, p, "Linear weight gradient", scale: 2)
            assertClose(lin.bias!.grad!, gb32, p, "Linear bias gradient", scale: 2)
            assertClose(x.grad!, gx32, p, "Linear input gradient", scale: 2)
            XCTAssertEqual(lin.weight.value.dtype, .float32, "the master weight is untouched")
        }
    }

    func testConv2dForwardAndGradientsCloseToFloat32() {
        for p in HalfPrecision.allCases {
            let conv = Conv2d(3, 5, kernel: 3, stride: 1, padding: 1, generator: Generator(seed: 3))
            let x = Tensor.randn([2, 3, 7, 6], generator: Generator(seed: 4)).requiringGrad()
            let y32 = conv(x)
            probeLoss(y32).backward()
            let (gw32, gb32, gx32) = (conv.weight.grad!, conv.bias!.grad!, x.grad!)
            conv.zeroGrad(); x.zeroGrad()

            let yh = withAutocast(p) { conv(x) }
            XCTAssertEqual(yh.dtype, p.dtype)
            assertClose(yh, y32, p, "Conv2d output")
            probeLoss(yh).backward()
            XCTAssertEqual(conv.weight.grad?.dtype, .float32)
            assertClose(conv.weight.grad!, gw32, p, "Conv2d weight gradient", scale: 2)
            assertClose(conv.bias!.grad!, gb32, p, "Conv2d bias gradient", scale: 2)
            assertClose(x.grad!, gx32, p, "Conv2d input gradient", scale: 2)
        }
    }

    /// Outside autocast the layers compute exactly the Float32 formula (bit for bit), before
    /// and after an autocast region.
    func testOutsideAutocastBitwiseUnchanged() {
        let lin = Linear(6, 4, generator: Generator(seed: 5))
        let x = Tensor.randn([3, 6], generator: Generator(seed: 6))
        let direct = x.matmul(lin.weight.value.transposed(0, 1)) + lin.bias!.value
        let before = lin(x)
        _ = withAutocast(.float16) { lin(x) }
        let after = lin(x)
        XCTAssertEqual(before.scalars(as: Float.self), direct.scalars(as: Float.self))
        XCTAssertEqual(after.scalars(as: Float.self), direct.scalars(as: Float.self))

        let conv = Conv2d(2, 3, kernel: 3, padding: 1, generator: Generator(seed: 7))
        let xi = Tensor.randn([2, 2, 5, 5], generator: Generator(seed: 8))
        let directConv = xi.conv2d(conv.weight.value, bias: conv.bias!.value, padding: (1, 1))
        _ = withAutocast(.bfloat16) { conv(xi) }
        XCTAssertEqual(conv(xi).scalars(as: Float.self), directConv.scalars(as: Float.self))

        let bn = BatchNorm2d(3)
        let xb = Tensor.randn([4, 3, 3, 3], generator: Generator(seed: 9))
        let ref = xb.batchNorm(weight: bn.weight!.value, bias: bn.bias!.value, eps: bn.eps).output
        _ = withAutocast(.float16) { bn(xb.to(.float16)) }
        XCTAssertEqual(bn(xb).scalars(as: Float.self), ref.scalars(as: Float.self))
    }

    // MARK: Activations follow their input dtype

    func testActivationsAndPoolingFollowHalfInput() {
        for p in HalfPrecision.allCases {
            let x32 = Tensor.randn([2, 3, 6, 6], generator: Generator(seed: 10))
            let xh = x32.to(p.dtype)
            let layers: [(String, Module)] = [("relu", ReLU()), ("maxpool", MaxPool2d(kernel: 2)), ("avgpool", AvgPool2d(kernel: 2)),
                                              ("flatten", Flatten()), ("dropout", Dropout(0.25, generator: Generator(seed: 11)))]
            for (name, layer) in layers {
                let leaf = xh.requiringGrad()
                let y = withAutocast(p) { layer(leaf) }
                XCTAssertEqual(y.dtype, p.dtype, "\(name) keeps \(p)")
                // Oracle: the same layer in Float32 on the half values, rounded once.
                if let d = layer as? Dropout { _ = d; continue }
                let ref = layer(xh.to(.float32)).to(p.dtype)
                XCTAssertEqual(y.scalars(as: Float.self), ref.scalars(as: Float.self), "\(name) on \(p)")
                probeLoss(y).backward()
                XCTAssertEqual(leaf.grad?.dtype, p.dtype, "\(name) gradient dtype")
            }
            // Dropout: the mask is drawn from the same uniforms as in Float32 and stored in the
            // half type (1/(1 − p) rounded), the product computed in Float32 and rounded once.
            let d1 = Dropout(0.25, generator: Generator(seed: 12))
            let yh = withAutocast(p) { d1(xh) }
            let mask = Tensor.dropoutMask(xh.shape, p: 0.25, dtype: p.dtype, generator: Generator(seed: 12))
            XCTAssertEqual(yh.scalars(as: Float.self), (xh.to(.float32) * mask.to(.float32)).to(p.dtype).scalars(as: Float.self))
        }
    }

    // MARK: BatchNorm precision rules

    func testBatchNormL2UnderAutocastMatchesFloat32() {
        for p in HalfPrecision.allCases {
            let x = Tensor.randn([6, 4, 3, 3], mean: 2, std: 3, generator: Generator(seed: 13))
            let xh = x.to(p.dtype)
            // Oracle: Float32 BN on the half-rounded input (only the input and output roundings differ).
            let ref = BatchNorm2d(4), bn = BatchNorm2d(4)
            for m in [ref, bn] {
                noGrad {
                    m.weight!.value.add_(Tensor.randn([4], std: 0.5, generator: Generator(seed: 14)))
                    m.bias!.value.add_(Tensor.randn([4], generator: Generator(seed: 15)))
                }
            }
            let xr = xh.to(.float32).requiringGrad()
            let y32 = ref(xr)
            probeLoss(y32).backward()
            let leaf = xh.requiringGrad()
            let yh = withAutocast(p) { bn(leaf) }
            XCTAssertEqual(yh.dtype, p.dtype)
            assertClose(yh, y32, p, "BN L2 output")
            probeLoss(yh).backward()
            XCTAssertEqual(bn.weight!.grad?.dtype, .float32)
            assertClose(bn.weight!.grad!, ref.weight!.grad!, p, "BN weight gradient", scale: 2)
            assertClose(bn.bias!.grad!, ref.bias!.grad!, p, "BN bias gradient", scale: 2)
            assertClose(leaf.grad!, xr.grad!, p, "BN input gradient", scale: 2)
            // Running statistics: updated once (not again by the backward recomputation), in Float32.
            XCTAssertEqual(bn.numBatchesTracked!.value.item(), 1)
            XCTAssertEqual(bn.runningMean!.value.dtype, .float32)
            XCTAssertEqual(bn.runningMean!.value.scalars(as: Float.self), ref.runningMean!.value.scalars(as: Float.self))
            XCTAssertEqual(bn.runningVar!.value.scalars(as: Float.self), ref.runningVar!.value.scalars(as: Float.self))
            // Evaluation under autocast uses the running statistics in Float32.
            bn.eval(); ref.eval()
            let e = noGrad { withAutocast(p) { bn(xh) } }
            XCTAssertEqual(e.dtype, p.dtype)
            assertClose(e, noGrad { ref(xh.to(.float32)) }, p, "BN eval output")
        }
    }

    /// Deviations of ~1000 square to ~1e6, beyond Float16's 65504: BN statistics in Float16
    /// overflow (checked with `BatchNorm.statistics`), but the autocast policy computes them in
    /// Float32 and the output is normalised; with `halfBatchNorm`, L1 BN on the half input is
    /// still correct (Hoffer et al. 2018).
    func testBatchNormStatisticsStayFiniteWhereFloat16Overflows() {
        let x = Tensor.randn([16, 3, 4, 4], std: 1000, generator: Generator(seed: 16))
        let xh = x.to(.float16)
        // The oracle shows the hazard is real: a Float16 sum of squares is infinite.
        let naive = BatchNorm.statistics(xh, kind: .l2, computeIn: .float16).scale.doubles()
        XCTAssertTrue(naive.allSatisfy { $0.isInfinite }, "L2 scale in Float16 should overflow, got \(naive)")
        let l1Half = BatchNorm.statistics(xh, kind: .l1, computeIn: .float16).scale.doubles()
        XCTAssertTrue(l1Half.allSatisfy { $0.isFinite }, "L1 scale in Float16 stays finite, got \(l1Half)")

        for (norm, half) in [(BatchNormKind.l2, false), (.l2, true), (.l1, false), (.l1, true), (.linf(topK: nil), true)] {
            let bn = BatchNorm2d(3, norm: norm), ref = BatchNorm2d(3, norm: norm)
            let y = withAutocast(.float16, halfBatchNorm: half) { bn(xh) }
            let y32 = ref(xh.to(.float32))
            XCTAssertEqual(y.dtype, .float16)
            let v = y.doubles()
            XCTAssertTrue(v.allSatisfy { $0.isFinite }, "\(norm) halfBatchNorm \(half): non-finite output")
            // Outputs are O(1) and match Float32 BN; half L1/L∞ statistics round more (tolerance 1e-2).
            let tol = half && norm != .l2 ? 1e-2 : 2e-3
            let e = normwiseError(y, y32)
            XCTAssertLessThanOrEqual(e, tol, "\(norm) halfBatchNorm \(half): error \(e)")
            XCTAssertLessThan(v.map { Swift.abs($0) }.max()!, 10, "\(norm): output is normalised")
        }
    }

    /// L1 BN with `halfBatchNorm` computes on the half input: its output equals the layer run
    /// directly on half tensors (bit for bit); with the default policy it equals the Float32
    /// layer on the widened input, rounded once. Gradients match those of the direct runs.
    func testHalfBatchNormFlagSelectsComputeType() {
        let bn = BatchNorm2d(2, norm: .l1)
        XCTAssertTrue(bn.usesFloat32Statistics(AutocastPolicy(.float16)))
        XCTAssertFalse(bn.usesFloat32Statistics(AutocastPolicy(.float16, halfBatchNorm: true)))
        XCTAssertTrue(BatchNorm2d(2).usesFloat32Statistics(AutocastPolicy(.bfloat16, halfBatchNorm: true)), "L2 always Float32")
        let xh = Tensor.randn([4, 2, 3, 3], generator: Generator(seed: 17)).to(.float16)
        for half in [false, true] {
            let x = xh.requiringGrad(), xr = (half ? xh : xh.to(.float32)).requiringGrad()
            let y = withAutocast(.float16, halfBatchNorm: half) { bn(x) }
            XCTAssertEqual(y.gradNode?.op, "batchNorm", "one node that keeps only the half input")
            let direct = bn(xr)  // outside autocast: the composed ops on the chosen type
            XCTAssertEqual(direct.dtype, half ? .float16 : .float32)
            XCTAssertEqual(y.scalars(as: Float.self), direct.to(.float16).scalars(as: Float.self), "halfBatchNorm \(half)")
            probeLoss(y).backward()
            let gw = bn.weight!.grad!
            XCTAssertEqual(gw.dtype, .float32, "master γ gradient is Float32")
            bn.zeroGrad()
            probeLoss(direct.to(.float16)).backward()
            XCTAssertEqual(gw.scalars(as: Float.self), bn.weight!.grad!.scalars(as: Float.self), "γ gradient, halfBatchNorm \(half)")
            XCTAssertEqual(x.grad!.scalars(as: Float.self), xr.grad!.to(.float16).scalars(as: Float.self), "input gradient, halfBatchNorm \(half)")
            bn.zeroGrad()
        }
    }

    // MARK: Losses

    func testLossesComputeInFloat32UnderAutocast() {
        let logits = Tensor.randn([5, 7], std: 3, generator: Generator(seed: 18)).to(.float16)
        let targets = Tensor([Int64(0), 3, 6, 2, 2])
        let ce = withAutocast(.float16) { Loss.crossEntropy(logits: logits, targets: targets, labelSmoothing: 0.1) }
        XCTAssertEqual(ce.dtype, .float32)
        let ref = Loss.crossEntropy(logits: logits.to(.float32), targets: targets, labelSmoothing: 0.1)
        XCTAssertEqual(ce.item(), ref.item(), "identical to the loss of the widened logits")
        // Outside autocast nothing changes: half logits give a half loss, as before.
        XCTAssertEqual(Loss.crossEntropy(logits: logits, targets: targets).dtype, .float16)
        let a = Tensor.randn([4, 3], generator: Generator(seed: 19)).to(.bfloat16), b = Tensor.zeros([4, 3], dtype: .bfloat16)
        let mse = withAutocast(.bfloat16) { Loss.mseLoss(a, b) }
        XCTAssertEqual(mse.dtype, .float32)
        XCTAssertEqual(mse.item(), Loss.mseLoss(a.to(.float32), b.to(.float32)).item())
        // Gradient flows back to the half logits (as half).
        let leaf = logits.requiringGrad()
        withAutocast(.float16) { Loss.crossEntropy(logits: leaf, targets: targets) }.backward()
        XCTAssertEqual(leaf.grad?.dtype, .float16)
    }

    // MARK: A small CNN

    final class SmallCNN: Module {
        let features = Sequential(Conv2d(1, 8, kernel: 3, padding: 1, bias: false, generator: Generator(seed: 20)), BatchNorm2d(8), ReLU(),
                                  MaxPool2d(kernel: 2),
                                  Conv2d(8, 16, kernel: 3, padding: 1, bias: false, generator: Generator(seed: 21)), BatchNorm2d(16), ReLU())
        let classifier = Sequential(Flatten(), Linear(16 * 6 * 6, 10, generator: Generator(seed: 22)))
        override func forward(_ x: Tensor) -> Tensor { classifier(features(x)) }
    }

    func testSmallCNNForwardAndGradients() {
        for p in HalfPrecision.allCases {
            let ref = SmallCNN(), net = SmallCNN()
            let x = Tensor.randn([4, 1, 12, 12], generator: Generator(seed: 23))
            let y32 = ref(x)
            probeLoss(y32).backward()
            let yh = withAutocast(p) { net(x) }
            XCTAssertEqual(yh.dtype, p.dtype)
            assertClose(yh, y32, p, "CNN logits", scale: 2)
            probeLoss(yh).backward()
            for ((name, a), (_, b)) in zip(net.namedParameters(), ref.namedParameters()) {
                XCTAssertEqual(a.grad?.dtype, .float32, name)
                if p == .float16 {
                    assertClose(a.grad!, b.grad!, p, "CNN gradient \(name)", scale: 4)
                } else {
                    // BFloat16 rounds pre-activations by up to 2⁻⁹ relative, enough to move a few
                    // of them across ReLU's kink in a small batch; each such element switches a
                    // whole gradient term on or off, so elementwise errors reach ~0.1–0.25 (measured:
                    // Linear-ReLU-Linear 6e-2 against 3e-3 without the ReLU). The gradient's
                    // direction must still agree: cosine similarity ≥ 0.98.
                    let c = cosine(a.grad!, b.grad!)
                    XCTAssertGreaterThanOrEqual(c, 0.98, "CNN gradient \(name) (bfloat16): cosine similarity \(c)")
                }
            }
        }
    }

    /// Bytes held by the graph after the forward pass (saved activations and the output),
    /// measured with the allocator's accounting.
    func graphBytes(_ model: Module, _ x: Tensor, _ precision: HalfPrecision?) -> Int {
        let before = Memory.stats().current
        let y = withAutocast(precision.map { AutocastPolicy($0) }) { Memory.withTag(.activations) { model(x) } }
        let held = Memory.stats().current - before
        withExtendedLifetime(y) {}
        return held
    }

    func testSavedActivationBytesRoughlyHalve() {
        let net = SmallCNN()
        let x = Tensor.randn([16, 1, 12, 12], generator: Generator(seed: 24))
        let fp32 = graphBytes(net, x, nil)
        for p in HalfPrecision.allCases {
            let half = graphBytes(net, x, p)
            let ratio = Double(half) / Double(fp32)
            // Max pooling keeps Int64 indices whatever the dtype, and BN keeps its half input only.
            XCTAssertLessThan(ratio, 0.62, "\(p): graph holds \(half) bytes vs \(fp32) in Float32")
            XCTAssertGreaterThan(ratio, 0.4, "\(p): graph holds \(half) bytes vs \(fp32) in Float32")
        }
    }

    /// BN under autocast keeps only its half input for backward: after the forward pass the
    /// graph holds the half input and the half output, not a Float32 copy.
    func testBatchNormKeepsOnlyHalfInput() {
        let bn = BatchNorm2d(8)
        let x = Tensor.randn([8, 8, 10, 10], generator: Generator(seed: 25)).to(.float16).requiringGrad()
        let before = Memory.stats().current
        let y = withAutocast(.float16) { bn(x) }
        let held = Memory.stats().current - before
        // The output (2 bytes per element) plus small per-channel tensors; the input is shared.
        XCTAssertLessThan(held, x.count * 2 + 4096, "BN under autocast holds \(held) bytes for \(x.count) half elements")
        withExtendedLifetime(y) {}
    }
}
