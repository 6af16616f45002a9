import XCTest
import Collectives
@testable import DataParallel

/// `DataParallelCheck` (the `mpirun` cross-check) on in-process ranks, and on MPI when
/// this test binary is started by `mpirun`:
/// `mpirun --oversubscribe -np 3 .build/debug/LoomPackageTests.xctest DataParallelTests.DataParallelCheckTests/testUnderMPI`
final class DataParallelCheckTests: XCTestCase {
    func testAllCasesPassInProcess() throws {
        for n in [1, 2, 3] {
            let results = try InProcessWorld.run(size: n) { g in
                try DataParallelCheck.run(group: g) { _ in }.map { ($0.name, $0.passed, $0.detail) }
            }
            XCTAssertEqual(results[0].count, 9, "world \(n)")
            for rank in results.indices {
                for (name, passed, detail) in results[rank] { XCTAssertTrue(passed, "world \(n) rank \(rank): \(name): \(detail)") }
            }
        }
    }

    /// The benchmark runs and reports consistent numbers (not a performance assertion).
    func testBenchReports() throws {
        for overlap in [true, false] {
            let r = try InProcessWorld.run(size: 2) { g in
                try DataParallelBench.run(model: mlpBuilder(1), group: g, inputShape: [5], classes: 3, batchPerRank: 4,
                                          steps: 3, warmup: 1, options: DDPOptions(overlap: overlap))
            }
            XCTAssertEqual(r[0].worldSize, 2)
            XCTAssertEqual(r[0].overlap, overlap)
            XCTAssertGreaterThan(r[0].imagesPerSecond, 0)
            XCTAssertEqual(r[0].imagesPerSecond, 8 / r[0].secondsPerStep, accuracy: 1e-6 * r[0].imagesPerSecond)
            XCTAssertLessThanOrEqual(r[0].syncSecondsPerStep, r[0].secondsPerStep)
            XCTAssertEqual(r[0].secondsPerStep, r[1].secondsPerStep)  // max over ranks, the same on both
        }
    }

    func testUnderMPI() throws {
        guard MPIProcessGroup.isLaunchedByMPI else {
            throw XCTSkip("not started by mpirun (CI: mpirun --oversubscribe -np 2|3 LoomPackageTests.xctest DataParallelTests.DataParallelCheckTests/testUnderMPI)")
        }
        let g = try MPIProcessGroup.world()
        let cases = try DataParallelCheck.run(group: g) { c in
            if g.rank == 0 { print("\(c.passed ? "ok  " : "FAIL") \(c.name)\(c.detail.isEmpty ? "" : ": \(c.detail)")") }
        }
        XCTAssertEqual(cases.count, 9)
        for c in cases { XCTAssertTrue(c.passed, "rank \(g.rank): \(c.name): \(c.detail)") }
    }
}
