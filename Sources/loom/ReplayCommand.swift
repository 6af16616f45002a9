import ArgumentParser
import Foundation

/// `loom replay <args>`: Loom's replay service (Reverb-style tables over gRPC).
///
/// The service lives in its own package (`Services/ReplayService`) so that gRPC stays out
/// of the core build; its binary is `loom-replay`. This command finds that binary and
/// execs it with the same arguments, so `loom replay serve --config tables.yaml --port 8000`
/// is `loom-replay serve --config tables.yaml --port 8000`.
struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Run Loom's replay service (loom-replay): serve, bench, ...",
        discussion: """
        Passes its arguments to the loom-replay binary, found in this order: $LOOM_REPLAY, \
        next to this loom binary, Services/ReplayService/.build/release under the current \
        directory, then PATH. Build it with `make replay`.
        Example: loom replay serve --config tables.yaml --port 8000 --checkpoint-dir ckpt
        """)

    @Flag(help: "Print the path of loom-replay and the command instead of running it.") var dryRun = false
    @Argument(parsing: .captureForPassthrough, help: "loom-replay's subcommand and its arguments (e.g. serve --config tables.yaml).")
    var arguments: [String] = []

    func run() throws {
        if let explicit = ProcessInfo.processInfo.environment["LOOM_REPLAY"], !explicit.isEmpty,
           !FileManager.default.isExecutableFile(atPath: explicit) {
            throw ReplayCommandError(message: "LOOM_REPLAY=\(explicit) is not an executable file; expected the path of loom-replay (built by `make replay`)")
        }
        guard let binary = ReplayBinary.locate() else {
            throw ReplayCommandError(message: """
                loom-replay not found (looked next to \(Launch.executablePath()), in \
                Services/ReplayService/.build/release and on PATH). Build it with `make replay`, or set LOOM_REPLAY to its path.
                """)
        }
        let argv = [binary] + arguments
        if dryRun { print(argv.joined(separator: " ")); return }
        var cargs = argv.map { strdup($0) } + [nil]
        execv(binary, &cargs)
        throw ReplayCommandError(message: "could not exec \(binary): \(String(cString: strerror(errno)))")
    }
}

struct ReplayCommandError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// Where `loom replay` looks for the service binary.
enum ReplayBinary {
    static func locate(environment: [String: String] = ProcessInfo.processInfo.environment,
                       selfPath: String = Launch.executablePath(),
                       currentDirectory: String = FileManager.default.currentDirectoryPath) -> String? {
        let fm = FileManager.default
        func executable(_ p: String) -> Bool { fm.isExecutableFile(atPath: p) }
        if let p = environment["LOOM_REPLAY"], !p.isEmpty {
            return executable(p) ? p : nil  // an explicit path that is wrong is an error, not a fallback
        }
        var candidates = [URL(fileURLWithPath: selfPath).deletingLastPathComponent().appendingPathComponent("loom-replay").path,
                          currentDirectory + "/Services/ReplayService/.build/release/loom-replay"]
        for dir in (environment["PATH"] ?? "").split(separator: ":") { candidates.append("\(dir)/loom-replay") }
        return candidates.first(where: executable)
    }
}
