import XCTest
@testable import Layers
import TensorCore

final class BasicBlockTests: XCTestCase {
    func testNamesFollowTorchvision() {
        let identity = BasicBlock(4, 4)
        XCTAssertNil(identity.downsample)
        // Module.stateDict() lists all parameters, then all buffers; the keys are torchvision's.
        XCTAssertEqual(identity.namedParameters().map(\.0), [
            "conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias",
        ])
        XCTAssertEqual(identity.namedBuffers().map(\.0), [
            "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
            "bn2.running_mean", "bn2.running_var", "bn2.num_batches_tracked",
        ])
        XCTAssertEqual(identity.parameterCount, 2 * (4 * 4 * 9) + 4 * 4)
        let down = BasicBlock(3, 5, stride: 2)
        XCTAssertEqual(Array(down.namedParameters().map(\.0).suffix(3)),
                       ["downsample.0.weight", "downsample.1.weight", "downsample.1.bias"])
        XCTAssertEqual(Array(down.namedBuffers().map(\.0).suffix(3)),
                       ["downsample.1.running_mean", "downsample.1.running_var", "downsample.1.num_batches_tracked"])
        XCTAssertEqual(down.stateDict().count, 9 + 9)
        let shapes = Dictionary(uniqueKeysWithValues: down.stateDict().map { ($0.0, $0.1.shape) })
        XCTAssertEqual(shapes["conv1.weight"], [5, 3, 3, 3])
        XCTAssertEqual(shapes["conv2.weight"], [5, 5, 3, 3])
        XCTAssertEqual(shapes["downsample.0.weight"], [5, 3, 1, 1])
        XCTAssertEqual(shapes["downsample.1.running_var"], [5])
        // Channel change alone (stride 1) also needs the projection.
        XCTAssertNotNil(BasicBlock(3, 5).downsample)
        XCTAssertNil(BasicBlock(5, 5, stride: 1).downsample)
        // The norm kind reaches every BN.
        let l1 = BasicBlock(2, 4, stride: 2, norm: .l1)
        XCTAssertEqual(l1.bn1.norm, .l1)
        XCTAssertEqual((l1.downsample!.layers[1] as! BatchNorm2d).norm, .l1)
    }

    func testForwardIsTheDocumentedComposition() {
        for (inP, p, stride) in [(3, 3, 1), (2, 4, 2), (3, 5, 1)] {
            let block = BasicBlock(inP, p, stride: stride, generator: Generator(seed: 1))
            normsToFloat64(block)
            let x = normsRandn([2, inP, 5, 5], seed: 2)
            let y = block(x)
            XCTAssertEqual(y.shape, [2, p, (5 + stride - 1) / stride, (5 + stride - 1) / stride])
            // Recompute in eval mode with the same (now updated) running stats on both sides.
            block.eval()
            let out = block.bn2(block.conv2(block.bn1(block.conv1(x)).relu()))
            let shortcut = block.downsample.map { $0(x) } ?? x
            normsAssertClose(block(x), (out + shortcut).relu(), atol: 0, rtol: 0, "BasicBlock(\(inP), \(p), stride \(stride))")
            XCTAssertTrue(y.doubles().allSatisfy { $0 >= 0 }, "output passes through ReLU")
        }
    }

    func testGradientsFiniteDifferences() {
        let block = BasicBlock(2, 3, stride: 2, generator: Generator(seed: 3))
        normsToFloat64(block)
        let x = normsRandn([2, 2, 4, 4], seed: 4)
        normsCheckGradients("BasicBlock input", [x], atol: 1e-5, rtol: 1e-4) { block($0[0]) }
        let w = block.conv1.weight.value.detached()
        normsCheckGradients("BasicBlock conv1.weight", [w], atol: 1e-5, rtol: 1e-4) { xs in
            block.conv1.weight.value = xs[0]
            return block(x)
        }
    }
}

final class EmbeddingTests: XCTestCase {
    func testLookupAndShapes() {
        let e = Embedding(5, 3)
        XCTAssertEqual(e.stateDict().map(\.0), ["weight"])
        XCTAssertEqual(e.weight.shape, [5, 3])
        let w = e.weight.value.doubles()
        let idx = try! Tensor([Int64(4), 0, 4, 2], shape: [2, 2])
        let y = e(idx)
        XCTAssertEqual(y.shape, [2, 2, 3])
        let rows = [4, 0, 4, 2].flatMap { Array(w[($0 * 3)..<($0 * 3 + 3)]) }
        XCTAssertEqual(y.doubles(), rows)
        XCTAssertEqual(e(Tensor([Int32(1)])).doubles(), Array(w[3..<6]))
        let pre = Embedding(weight: try! Tensor([1.0, 2, 3, 4], shape: [2, 2]))
        XCTAssertEqual(pre(Tensor([Int64(1)])).doubles(), [3, 4])
    }

    func testInitIsStandardNormal() {
        let e = Embedding(200, 50, generator: Generator(seed: 5))
        let v = e.weight.value
        XCTAssertEqual(v.mean().item(), 0, accuracy: 0.05)
        XCTAssertEqual(v.std().item(), 1, accuracy: 0.05)
    }

    func testGradientAccumulatesRepeatedRows() {
        let e = Embedding(4, 2)
        normsToFloat64(e)
        let idx = try! Tensor([Int64(1), 1, 3], shape: [3])
        let cot = try! Tensor([1.0, 2, 10, 20, 100, 200], shape: [3, 2])
        e(idx).backward(cot)
        XCTAssertEqual(e.weight.grad?.doubles(), [0, 0, 11, 22, 0, 0, 100, 200])
        normsCheckGradients("Embedding", [normsRandn([4, 2], seed: 6)]) { xs in
            e.weight.value = xs[0]
            return e(try! Tensor([Int64(0), 3, 3, 2], shape: [2, 2]))
        }
    }
}

final class EmbeddingPaddingTests: XCTestCase {
    func testPaddingRowStartsAtZeroAndGetsNoGradient() {
        let e = Embedding(5, 3, paddingIndex: -1, generator: Generator(seed: 2))
        XCTAssertEqual(e.paddingIndex, 4)
        let w = e.weight.value.scalars(as: Float.self)
        XCTAssertEqual(Array(w[12..<15]), [0, 0, 0])
        // The other rows are the same draws as without padding (PyTorch fills the row after drawing).
        let plain = Embedding(5, 3, generator: Generator(seed: 2)).weight.value.scalars(as: Float.self)
        XCTAssertEqual(Array(w[0..<12]), Array(plain[0..<12]))
        let idx = try! Tensor([4, 1, 4, 0] as [Int64], shape: [2, 2])
        (e(idx) * 2.0).sum().backward()
        let g = e.weight.grad!.scalars(as: Float.self)
        XCTAssertEqual(Array(g[12..<15]), [0, 0, 0], "padding row gradient")
        XCTAssertEqual(Array(g[0..<3]), [2, 2, 2])
        XCTAssertEqual(Array(g[3..<6]), [2, 2, 2])
        XCTAssertEqual(Array(g[6..<12]), [0, 0, 0, 0, 0, 0])
    }
}
