import XCTest
@testable import Collectives

final class MPILaunchTests: XCTestCase {
    func testRootOversubscribedLocal() throws {
        let a = try MPILaunch.arguments(np: 4, hostfile: nil, isRoot: true, cores: 2, program: "/x/loom", command: ["train", "--data-parallel"])
        XCTAssertEqual(a, ["mpirun", "-np", "4", "--allow-run-as-root", "--oversubscribe", "-x", "OPENBLAS_NUM_THREADS=1", "/x/loom", "train", "--data-parallel"])
    }

    func testUserWithinCoresAndHostfile() throws {
        XCTAssertEqual(try MPILaunch.arguments(np: 2, hostfile: nil, isRoot: false, cores: 2, program: "/x/loom", command: ["allreduce-bench"]),
                       ["mpirun", "-np", "2", "-x", "OPENBLAS_NUM_THREADS=1", "/x/loom", "allreduce-bench"])
        // A hostfile spreads ranks over machines: no automatic --oversubscribe.
        XCTAssertEqual(try MPILaunch.arguments(np: 8, hostfile: "hosts", tcp: true, blasThreads: 2, isRoot: false, cores: 2, program: "/x/loom", command: ["c"]),
                       ["mpirun", "-np", "8", "--hostfile", "hosts", "--mca", "btl", "self,tcp", "-x", "OPENBLAS_NUM_THREADS=2", "/x/loom", "c"])
    }

    func testErrorsNameTheValue() {
        XCTAssertThrowsError(try MPILaunch.arguments(np: 0, hostfile: nil, isRoot: false, cores: 2, program: "p", command: ["c"])) {
            XCTAssertEqual("\($0)", "-np 0: expected at least 1 rank")
        }
        XCTAssertThrowsError(try MPILaunch.arguments(np: 2, hostfile: nil, isRoot: false, cores: 2, program: "p", command: [])) {
            XCTAssertEqual("\($0)", "missing the command after --: loom launch -np 2 -- <subcommand> [args]")
        }
    }
}
