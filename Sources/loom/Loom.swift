import ArgumentParser
import Foundation
import TensorCore
import TensorKernels

@main
struct Loom: ParsableCommand {
    static let version = "0.1.0"
    static let configuration = CommandConfiguration(
        commandName: "loom",
        abstract: "Loom: a deep-learning systems framework in Swift.",
        version: version,
        subcommands: [Train.self, Eval.self, Predict.self, Models_.self, Summary.self, Ops.self, Demo.self, Bench.self, TrainBench.self, NormPrecision.self, MemoryCommand.self, CheckpointBench.self, Launch.self, CollectivesCheckCommand.self, AllreduceBenchCommand.self, DDPCheckCommand.self, DDPBenchCommand.self, ReplayCommand.self]
    )

    /// Large tensors come from the heap and are reused between steps instead of being
    /// mapped and page-faulted in afresh each time (`SystemAllocator`).
    static func main() {
        SystemAllocator.keepLargeBlocksInHeap()
        // OpenBLAS's idle threads sleep soon instead of spinning ~0.1 s after each GEMM
        // (BlasInfo.setThreadTimeout); a value the user set in the environment wins.
        if getenv("OPENBLAS_THREAD_TIMEOUT") == nil { BlasInfo.setThreadTimeout(exponent: defaultBlasThreadTimeout) }
        main(nil)
    }

    /// OpenBLAS idle-spin exponent the `loom` executable sets (see `BlasInfo.setThreadTimeout`).
    static let defaultBlasThreadTimeout = 14
}

/// `loom ops`: the op catalogue with dtypes.
struct Ops: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List Loom's ops with their dtypes and differentiability.")

    func run() {
        let nameWidth = max(12, OpRegistry.ops.map(\.name.count).max() ?? 0)
        print("op".padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  category  grad  dtypes")
        for op in OpRegistry.ops {
            let name = op.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
            let cat = op.category.padding(toLength: 8, withPad: " ", startingAt: 0)
            print("\(name)  \(cat)  \(op.differentiable ? "yes " : "no  ")  \(op.dtypes.map(\.rawValue).joined(separator: ", "))")
        }
        print("\(OpRegistry.ops.count) ops, \(OpRegistry.differentiableOps.count) differentiable")
    }
}
