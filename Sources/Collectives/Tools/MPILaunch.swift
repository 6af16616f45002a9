import Foundation

/// How `loom launch` runs a program on N ranks: the mpirun command line as plain data.
public enum MPILaunch {
    /// A launch request that cannot be turned into a command line.
    public struct LaunchError: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// The mpirun argument vector (argv[0] is "mpirun"): `--allow-run-as-root` when root,
    /// `--oversubscribe` when forced or when `np` exceeds the local cores without a
    /// hostfile, `--hostfile`, optional TCP-only transport, one BLAS thread per rank
    /// (exported), then the program and its arguments.
    public static func arguments(np: Int, hostfile: String?, forceOversubscribe: Bool = false, tcp: Bool = false,
                                 blasThreads: Int = 1, isRoot: Bool, cores: Int, program: String, command: [String]) throws -> [String] {
        guard np >= 1 else { throw LaunchError(description: "-np \(np): expected at least 1 rank") }
        guard blasThreads >= 1 else { throw LaunchError(description: "--blas-threads \(blasThreads): expected at least 1") }
        guard !command.isEmpty else { throw LaunchError(description: "missing the command after --: loom launch -np \(np) -- <subcommand> [args]") }
        var a = ["mpirun", "-np", String(np)]
        if isRoot { a.append("--allow-run-as-root") }
        if forceOversubscribe || (hostfile == nil && np > cores) { a.append("--oversubscribe") }
        if let hostfile { a += ["--hostfile", hostfile] }
        if tcp { a += ["--mca", "btl", "self,tcp"] }
        a += ["-x", "OPENBLAS_NUM_THREADS=\(blasThreads)", program]
        return a + command
    }
}
