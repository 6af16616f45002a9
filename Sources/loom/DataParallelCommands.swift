import ArgumentParser
import Collectives
import DataParallel
import Foundation
import Layers
import Models
import TensorCore
import TensorKernels

/// `loom ddp-check`: data-parallel equivalence checks across MPI ranks (DDP, sharded
/// optimizer, SyncBatchNorm against the single-process result), PASS/FAIL per case.
struct DDPCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ddp-check",
        abstract: "Under mpirun: DDP, ZeRO-style sharding and SyncBatchNorm against one process (PASS/FAIL per case).")
    @Option(help: "Seconds an op waits for peers before failing.") var timeout: Double = 120

    func run() throws {
        guard MPIProcessGroup.isLaunchedByMPI else {
            throw ValidationError("ddp-check runs under mpirun: `loom launch -np 2 -- ddp-check`")
        }
        let g = try MPIProcessGroup.world(timeout: timeout)
        KernelThreading.maxThreads = 1
        BlasInfo.setThreads(1)
        if g.rank == 0 { print("ddp-check: \(g.size) ranks (mpi)") }
        let cases = try DataParallelCheck.run(group: g) { c in
            if g.rank == 0 {
                print("\(c.passed ? "PASS" : "FAIL")  \(c.name)\(c.detail.isEmpty ? "" : "  (\(c.detail))")")
                fflush(nil)
            }
        }
        let failed = cases.filter { !$0.passed }.count
        if g.rank == 0 { print("\(cases.count - failed)/\(cases.count) passed (mpi, \(g.size) ranks)") }
        if failed > 0 { throw ExitCode(1) }
    }
}

/// `loom ddp-bench`: data-parallel training throughput of a zoo model on random data,
/// with gradient allreduce overlapped with backward or not.
struct DDPBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ddp-bench",
        abstract: "Under mpirun: data-parallel training images/s (all ranks) with overlap on and off.",
        discussion: "Example: loom launch -np 2 -- ddp-bench --model convnet-bn --batch-per-rank 64")
    @Option(help: "Zoo model (28x28 inputs).") var model: String = "convnet-bn"
    @Option(help: "Samples per rank per step.") var batchPerRank: Int = 64
    @Option(help: "Timed steps.") var steps: Int = 20
    @Option(help: "Untimed warm-up steps.") var warmup: Int = 3
    @Option(help: "Allreduce algorithm: native, ring, halving-doubling or tree.") var allreduce: String = "native"

    func run() throws {
        guard MPIProcessGroup.isLaunchedByMPI else {
            throw ValidationError("ddp-bench runs under mpirun: `loom launch -np 2 -- ddp-bench`")
        }
        guard batchPerRank >= 1, steps >= 1, warmup >= 0 else { throw ValidationError("--batch-per-rank and --steps must be positive") }
        guard let algorithm = AllReduceAlgorithm(rawValue: allreduce) else {
            throw ValidationError("--allreduce '\(allreduce)': expected native, ring, halving-doubling or tree")
        }
        let g = try MPIProcessGroup.world()
        KernelThreading.maxThreads = 1
        BlasInfo.setThreads(1)
        let entry = try Zoo.entry(model)
        for overlap in [true, false] {
            Generator.manualSeed(0)
            let m = try Zoo.make(model)
            var options = DDPOptions()
            options.overlap = overlap
            options.collective = CollectiveOptions(algorithm: algorithm)
            let r = try DataParallelBench.run(model: m, group: g, inputShape: entry.inputShape, classes: entry.classes,
                                              batchPerRank: batchPerRank, steps: steps, warmup: warmup, options: options)
            if g.rank == 0 { print("\(model) (\(algorithm.rawValue)): \(r)"); fflush(nil) }
        }
    }
}
