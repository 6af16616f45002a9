import XCTest
import Collectives
import Layers
import Optimizers
import TensorCore
@testable import DataParallel

/// SyncBatchNorm on N ranks with B/N samples each against one BatchNorm2d with batch B.
///
/// Oracle: `BatchNorm2d` (fused kernel) on the whole batch; loss `Σ y ⊙ R` with a fixed
/// random R, so the job's loss is the sum of the ranks' losses. Compared: each rank's
/// output slice and input-gradient slice, the sum over ranks of γ/β gradients, and the
/// running statistics. Float64 input (statistics and sums in a different order from
/// the fused kernel): tolerance 1e-10; running statistics are Float32 buffers: 1e-6.
final class SyncBatchNormTests: XCTestCase {
    func testMatchesBatchNorm2dOnTheWholeBatch() throws {
        let c = 3, b = 6
        let g = Generator(seed: 21)
        let x = Tensor.randn([b, c, 2, 3], mean: 0.5, std: 2, dtype: .float64, generator: g)
        let r = Tensor.randn([b, c, 2, 3], dtype: .float64, generator: g)
        let gamma = Tensor.randn([c], dtype: .float64, generator: g), beta = Tensor.randn([c], dtype: .float64, generator: g)

        // Oracle: two training steps (running stats move twice), gradients of the second.
        let bn = BatchNorm2d(c)
        bn.weight!.value = gamma.requiringGrad()
        bn.bias!.value = beta.requiringGrad()
        _ = bn(x)
        let xs = x.requiringGrad()
        let y = bn(xs)
        (y * r).sum().backward()
        let oracle = (y: y.detached(), dx: xs.grad!, dw: bn.weight!.grad!, db: bn.bias!.grad!,
                      rm: bn.runningMean!.value, rv: bn.runningVar!.value)

        for n in [1, 2, 3] {
            let results = try InProcessWorld.run(size: n) { group -> [[Double]] in
                let k = b / n
                let xl = x.narrowed(dim: 0, start: group.rank * k, length: k).contiguous()
                let rl = r.narrowed(dim: 0, start: group.rank * k, length: k).contiguous()
                let sbn = SyncBatchNorm(c, group: group)
                sbn.weight!.value = gamma.requiringGrad()
                sbn.bias!.value = beta.requiringGrad()
                _ = sbn(xl)
                let xi = xl.requiringGrad()
                let yl = sbn(xi)
                (yl * rl).sum().backward()
                var dw = sbn.weight!.grad!, db = sbn.bias!.grad!
                try group.allReduce(&dw)
                try group.allReduce(&db)
                return [yl.doubles(), xi.grad!.doubles(), dw.doubles(), db.doubles(),
                        sbn.runningMean!.value.doubles(), sbn.runningVar!.value.doubles(),
                        sbn.numBatchesTracked!.value.doubles()]
            }
            let k = b / n
            for rank in 0..<n {
                let res = results[rank]
                let ySlice = oracle.y.narrowed(dim: 0, start: rank * k, length: k).doubles()
                let dxSlice = oracle.dx.narrowed(dim: 0, start: rank * k, length: k).doubles()
                assertClose(res[0], ySlice, 1e-10, "world \(n) rank \(rank) output")
                assertClose(res[1], dxSlice, 1e-10, "world \(n) rank \(rank) input gradient")
                assertClose(res[2], oracle.dw.doubles(), 1e-9, "world \(n) rank \(rank) weight gradient")
                assertClose(res[3], oracle.db.doubles(), 1e-9, "world \(n) rank \(rank) bias gradient")
                assertClose(res[4], oracle.rm.doubles(), 1e-6, "world \(n) rank \(rank) running mean")
                assertClose(res[5], oracle.rv.doubles(), 1e-6, "world \(n) rank \(rank) running var")
                XCTAssertEqual(res[6], [2])
            }
        }
    }

    /// A CNN with SyncBatchNorm under DDP (N ranks, B/N each, 3 SGD steps) equals the
    /// same CNN with BatchNorm2d in one process with batch B: weights and running
    /// statistics. Float64 parameters and inputs (running statistics are Float32 buffers).
    /// SyncBN's blocking allreduces in backward interleave with DDP's asynchronous bucket
    /// allreduces on the same group in the same order on every rank.
    func testSyncBatchNormUnderDDPMatchesOneProcess() throws {
        @Sendable func build(_ seed: UInt64, norm: (Int) -> Module) -> Module {
            let g = Generator(seed: seed)
            return Sequential([Conv2d(2, 4, kernelSize: (3, 3), padding: (1, 1), generator: g), norm(4), ReLU(),
                               MaxPool2d(kernel: 2), Flatten(), Linear(16, 3, generator: g)])
        }
        let steps = 3, batch = 6
        let data = Batches(steps: steps, batch: batch, sample: [2, 4, 4], dtype: .float64, seed: 13)
        let single = convert(build(42) { BatchNorm2d($0) }, to: .float64)
        var opt = Optimizer(try sgd(lr: 0.1, momentum: 0.9), params: single.parameters.map(\.value))
        for t in 0..<steps {
            Loss.crossEntropy(logits: single(data.inputs[t]), targets: data.labels[t]).backward()
            optimizerStep(&opt, single)
            single.zeroGrad()
        }
        let oracle = weights(single) + single.namedBuffers().map { $0.1.value.doubles() }
        for n in [1, 2, 3] {
            let ranks = try InProcessWorld.run(size: n) { group -> [[Double]] in
                let model = convert(build(group.rank == 0 ? 42 : 5) { SyncBatchNorm($0, group: group) }, to: .float64)
                let ddp = try DistributedDataParallel(model, group: group, options: DDPOptions(bucketCapBytes: 128, firstBucketCapBytes: 32))
                var opt = Optimizer(try sgd(lr: 0.1, momentum: 0.9), params: model.parameters.map(\.value))
                for t in 0..<steps {
                    let (x, y) = data.local(t, rank: group.rank, size: n)
                    Loss.crossEntropy(logits: ddp(x), targets: y).backward()
                    try ddp.finishGradientSync()
                    optimizerStep(&opt, model)
                    model.zeroGrad()
                }
                return weights(model) + model.namedBuffers().map { $0.1.value.doubles() }
            }
            for r in 0..<n { XCTAssertEqual(ranks[r], ranks[0], "world \(n) rank \(r)") }
            let w = oracle.count - 3  // parameters first, then running_mean, running_var, num_batches_tracked
            assertClose(Array(ranks[0].prefix(w)).flatMap { $0 }, Array(oracle.prefix(w)).flatMap { $0 }, 1e-12, "world \(n) weights")
            assertClose(Array(ranks[0].suffix(3)).flatMap { $0 }, Array(oracle.suffix(3)).flatMap { $0 }, 1e-6, "world \(n) buffers")
        }
    }

    func testConvertCopiesStateAndEvalUsesRunningStatistics() throws {
        let out = try InProcessWorld.run(size: 2) { group -> [Double] in
            let bn = BatchNorm2d(2)
            bn.runningMean!.value = Tensor([Float(1), -1])
            bn.runningVar!.value = Tensor([Float(4), 0.25])
            let s = try SyncBatchNorm(converting: bn, group: group)
            s.eval()
            // Evaluation is local (no collectives): ranks may feed different inputs.
            return s(Tensor.full([1, 2, 1, 1], Double(group.rank + 2))).doubles()
        }
        // (x - m) / sqrt(v + eps) with x = 2 (rank 0), 3 (rank 1).
        XCTAssertEqual(out[0][0], (2 - 1) / (4 + 1e-5).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(out[1][1], (3 + 1) / (0.25 + 1e-5).squareRoot(), accuracy: 1e-5)
        let bad = try InProcessWorld.run(size: 1) { group -> String in
            do { _ = try SyncBatchNorm(converting: BatchNorm2d(2, norm: .l1), group: group); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(bad[0].hasPrefix("SyncBatchNorm: cannot convert a batch norm of kind"), bad[0])
    }

    /// The building block: forward is the sum over ranks, backward the sum of gradients.
    func testDifferentiableAllReduceSum() throws {
        let out = try InProcessWorld.run(size: 3) { group -> [Double] in
            let x = Tensor([Double(group.rank + 1), 10]).requiringGrad()
            let s = differentiableAllReduceSum(x, group: group)
            // Rank r's loss: (r + 1) * s[0] + s[1]  -> ds = [r + 1, 1], summed over ranks: [6, 3].
            (s * Tensor([Double(group.rank + 1), 1])).sum().backward()
            return s.doubles() + x.grad!.doubles()
        }
        for r in 0..<3 { XCTAssertEqual(out[r], [6, 30, 6, 3]) }
    }
}

func assertClose(_ a: [Double], _ b: [Double], _ tol: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, what, file: file, line: line)
    var worst = 0.0
    for (u, v) in zip(a, b) { worst = max(worst, abs(u - v)) }
    XCTAssertLessThanOrEqual(worst, tol, "\(what): max diff \(worst)", file: file, line: line)
}
