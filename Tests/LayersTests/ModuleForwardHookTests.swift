import XCTest
import Layers
import TensorCore

/// Forward pre-hooks and forward hooks (`Module.registerForwardPreHook` /
/// `registerForwardHook`), the seam FSDP gathers and frees parameters through.
final class ModuleForwardHookTests: XCTestCase {
    func testHooksRunInOrderAndMayReplaceInputAndOutput() {
        let net = Sequential([Linear(3, 2, generator: Generator(seed: 1)), ReLU()])
        let x = Tensor.randn([4, 3], generator: Generator(seed: 2))
        let plain = net(x)
        var log: [String] = []
        let lin = net.layers[0]
        let a = lin.registerForwardPreHook { m, input in
            log.append("pre1 \(m === lin) \(input.shape)")
            return input * 2
        }
        lin.registerForwardPreHook { _, input in
            log.append("pre2 \(input.doubles() == (x * 2).doubles())")
            return nil
        }
        let c = lin.registerForwardHook { _, input, output in
            log.append("post1 \(input.doubles() == (x * 2).doubles())")
            return output + 1
        }
        net.registerForwardHook { _, _, output in
            log.append("outer post")
            return nil
        }
        XCTAssertEqual(lin.forwardHookCount, 3)
        let hooked = net(x)
        XCTAssertEqual(log, ["pre1 true [4, 3]", "pre2 true", "post1 true", "outer post"])
        // Linear(2x) + 1 then ReLU.
        let expected = (net.layers[0].forward(x * 2) + 1).relu()
        XCTAssertEqual(hooked.doubles(), expected.doubles())
        XCTAssertNotEqual(hooked.doubles(), plain.doubles())

        lin.removeForwardHook(a)
        lin.removeForwardHook(c)
        lin.removeForwardHook(c)  // unknown handles are ignored
        XCTAssertEqual(lin.forwardHookCount, 1)
        log = []
        XCTAssertEqual(net(x).doubles(), plain.doubles())
        XCTAssertEqual(log, ["pre2 false", "outer post"])
    }

    /// Hooks are not state: they do not appear among children, parameters or state dict keys.
    func testHooksAreNotPartOfTheModuleState() {
        let lin = Linear(3, 2)
        let keys = lin.stateDict().map(\.0)
        lin.registerForwardHook { _, _, _ in nil }
        XCTAssertEqual(lin.stateDict().map(\.0), keys)
        XCTAssertEqual(lin.namedChildren().count, 0)
    }

    /// A checkpointed segment runs its modules again in backward; their hooks run again
    /// too (as in PyTorch), and gradients are unchanged by an identity hook.
    func testHooksRunDuringCheckpointRecomputation() {
        let net = Sequential([Linear(3, 3, generator: Generator(seed: 3)), ReLU(), Linear(3, 1, generator: Generator(seed: 4))])
        let x = Tensor.randn([5, 3], generator: Generator(seed: 5))
        net(x).sum().backward()
        let plain = net.parameters.map { $0.grad!.doubles() }
        net.zeroGrad()
        var calls = 0
        net.layers[2].registerForwardPreHook { _, _ in calls += 1; return nil }
        checkpoint(net, x).sum().backward()
        XCTAssertEqual(calls, 2, "one forward, one recomputation")
        for (p, g) in zip(net.parameters, plain) {
            XCTAssertEqual(p.grad!.doubles(), g)
        }
    }
}
