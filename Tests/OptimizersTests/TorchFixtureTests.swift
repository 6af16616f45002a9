import XCTest
import Foundation
import TensorCore
@testable import Optimizers

/// Parameters after each of 4 steps of PyTorch's optimizers on a fixed 2x3 Float64 tensor
/// with fixed gradients, produced by torch 2.13.0+cpu running
/// Tests/OptimizersTests/Fixtures/make_fixtures.py (which documents the setup). Torch is
/// not needed to run these tests.
enum TorchFixtures {
    // torch 2.13.0+cpu, Tests/OptimizersTests/Fixtures/make_fixtures.py
    static let p0: [Double] = [0.5, -1.25, 2.0, 0.0, 0.75, -0.3]
    static let sgdPlain: [[Double]] = [
        [0.4677891156381154, -1.299272486499423, 1.9568395316675562, -0.016749407507795255, 0.767539161384481, -0.2564212113793206],
        [0.3768593729555473, -1.3420104745228059, 1.9823936418702393, 0.06507830359864578, 0.8671556222680651, -0.18586717882228135],
        [0.4005212270770345, -1.2284901002266166, 2.1323821305048543, 0.18099297673204384, 0.8944799979088794, -0.25998418149307245],
        [0.5992594278037274, -1.0620366117818365, 2.1882652301446393, 0.10002299260872417, 0.7147383787465541, -0.4539621436620897],
    ]
    static let sgdMomentumDecay: [[Double]] = [
        [0.4652891156381154, -1.293022486499423, 1.9468395316675562, -0.016749407507795255, 0.7637891613844809, -0.2549212113793206],
        [0.34079313145166057, -1.3680155999397896, 1.914815022712702, 0.05008758387916901, 0.8719969217071755, -0.1425216630067733],
        [0.25070463414808014, -1.3151489497402313, 2.026407378174385, 0.2259051113414391, 0.992348297029879, -0.11476646382723796],
        [0.36710966413081025, -1.0945397313671477, 2.172591560838813, 0.3020413763774553, 0.9159611741728375, -0.28319091441553723],
    ]
    static let sgdNesterov: [[Double]] = [
        [0.4705602040743039, -1.2932202378494808, 1.9593555785008008, -0.015074466757015731, 0.7651102452460329, -0.2605090902413885],
        [0.3778324484805226, -1.3458877245362764, 1.9661395077961827, 0.05322422985636803, 0.8594489924635711, -0.18273479040021853],
        [0.3611659846658606, -1.2680641709528464, 2.0953488635969526, 0.17940137693098338, 0.9191978839657822, -0.2153820082785466],
        [0.5170585362127527, -1.100802435540233, 2.18791638428541, 0.16096406807903338, 0.7938162911665486, -0.38631239757371755],
    ]
    static let adam: [[Double]] = [
        [0.49000000031045404, -1.259999999797047, 1.9900000002316935, -0.009999999402963993, 0.7599999994298473, -0.2900000002294694],
        [0.48074894992983924, -1.2699379427878346, 1.9880275439080446, -0.004052686375759764, 0.7684900680810712, -0.28014816756552585],
        [0.47532656672765905, -1.2682227707809937, 1.993603242628363, 0.003817723418908999, 0.7764923630807381, -0.2787301197291517],
        [0.4785417874956019, -1.2627856823930959, 1.9998464126463207, 0.006558900726040165, 0.7747692378769933, -0.2831951529279525],
    ]
    static let adamDecay: [[Double]] = [
        [0.4800000537475704, -1.2699999456116582, 1.9800000316653261, -0.019999880593504077, 0.7699998007821568, -0.28000004293790726],
        [0.46083523169432417, -1.289686051468888, 1.968879240230737, -0.007148730867200958, 0.7869437179936861, -0.2600177464017984],
        [0.44977427438671924, -1.2814293597082154, 1.9781066288209295, 0.009757254447179784, 0.8018788044950045, -0.2578785669543624],
        [0.45766904907793116, -1.2668757882729655, 1.9882300091739473, 0.014332113194367817, 0.7949402391201948, -0.2686735917918329],
    ]
    static let adamW: [[Double]] = [
        [0.48950000031045404, -1.258749999797047, 1.9880000002316935, -0.009999999402963993, 0.7592499994298473, -0.2897000002294694],
        [0.4797594499295288, -1.2674291927880375, 1.984039543907813, -0.004042686376356801, 0.7669808180816413, -0.27955846756529634],
        [0.4738573072774191, -1.2644465915884084, 1.9876312030842234, 0.003831766104688319, 0.7742161322632265, -0.2778608612613569],
        [0.47659867073808454, -1.2577450566089223, 1.9918867418990969, 0.006569111645714797, 0.7717187909272184, -0.28204803359889635],
    ]
    static let sgdMomentumClipped: [[Double]] = [
        [0.4817821978150626, -1.2778674873412872, 1.9755893422404716, -0.009473114406414471, 0.7599197826735321, -0.27535274903876344],
        [0.4401064042927775, -1.3148299990857466, 1.960724159102435, 0.004750358966683974, 0.7965423907824953, -0.2335551910316177],
        [0.40761474047359975, -1.3240288019416027, 1.979144557928269, 0.042126558079747176, 0.835295779720693, -0.21165093662432574],
        [0.40430584157887056, -1.3105869988056607, 2.003015173046081, 0.06519926190087208, 0.8467191191171137, -0.2172495366653476],
    ]
    static let adamWOneCycle: [[Double]] = [
        [0.49790000006209084, -1.2517499999594095, 1.9976000000463388, -0.0019999998805928, 0.7518499998859695, -0.2979400000458939],
        [0.4491552481587064, -1.29518096491355, 1.9777497184278625, 0.02774656525483131, 0.7905410931426594, -0.24719113672594656],
        [0.4271369496122433, -1.2838921262177063, 1.9912420451746968, 0.0571565915784497, 0.8175852063508948, -0.24094648225062637],
        [0.43062209620641384, -1.2754907997603544, 1.9965570189195954, 0.06051165773320133, 0.8144092802276189, -0.24622665400761484],
    ]
    static let oneCycleLR: [Double] = [0.0040000000000000036, 0.013167184270002533, 0.037167184270002526, 0.06683281572999747, 0.09083281572999748, 0.1, 0.09874640062350874, 0.09504846320134738, 0.089091617757105, 0.0811745653949763, 0.07169430017913009, 0.06112620219362893, 0.0500002, 0.03887419780637107, 0.028306099820869922, 0.0188258346050237, 0.010908782242895003, 0.004951936798652629, 0.0012539993764912555, 4e-07]
    static let stepLR: [Double] = [0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]
}

final class TorchFixtureTests: XCTestCase {
    /// The gradient of step k, as in make_fixtures.py.
    private func grad(_ k: Int) -> [Double] {
        let kd = Double(k)
        return (0..<6).map { (i: Int) -> Double in
            let angle: Double = 0.7 * Double(i + 1) + 1.3 * kd
            return Foundation.sin(angle) * (kd + 1) / 2
        }
    }

    private func check(_ name: String, _ transformation: any GradientTransformation, _ expected: [[Double]],
                       tol: Double = 1e-13, file: StaticString = #filePath, line: UInt = #line) {
        var params = [try! Tensor(TorchFixtures.p0, shape: [2, 3]).requiringGrad()]
        var opt = Optimizer(transformation, params: params)
        for (k, want) in expected.enumerated() {
            params[0].grad = try! Tensor(grad(k), shape: [2, 3])
            opt.step(&params)
            let got = params[0].doubles()
            for j in got.indices where abs(got[j] - want[j]) > tol * max(1, abs(want[j])) {
                XCTFail("\(name): step \(k) element \(j): Loom \(got[j]), PyTorch \(want[j])", file: file, line: line)
                return
            }
        }
    }

    func testSGD() throws {
        check("sgd", try sgd(lr: 0.1), TorchFixtures.sgdPlain)
        check("sgd momentum decay", try sgd(lr: 0.1, momentum: 0.9, weightDecay: 5e-2), TorchFixtures.sgdMomentumDecay)
        check("sgd nesterov", try sgd(lr: 0.05, momentum: 0.8, nesterov: true, weightDecay: 1e-2), TorchFixtures.sgdNesterov)
    }

    func testAdam() throws {
        check("adam", try adam(lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8), TorchFixtures.adam)
        check("adam decay", try adam(lr: 0.02, b1: 0.8, b2: 0.99, eps: 1e-6, weightDecay: 0.1), TorchFixtures.adamDecay)
    }

    func testAdamW() throws {
        check("adamW", try adamW(lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8, weightDecay: 0.1), TorchFixtures.adamW)
    }

    func testClipGradNormThenSGD() throws {
        check("clip + sgd", chain(try clipByGlobalNorm(0.5), try sgd(lr: 0.1, momentum: 0.9)), TorchFixtures.sgdMomentumClipped)
    }

    func testAdamWWithOneCycle() throws {
        // OneCycleLR(max_lr=0.05, total_steps=5, pct_start=0.4, cycle_momentum=False), stepped after each update.
        let schedule = try LRSchedule.oneCycle(maxLR: 0.05, totalSteps: 5, pctStart: 0.4)
        check("adamW one-cycle", try adamW(lr: schedule, weightDecay: 0.1), TorchFixtures.adamWOneCycle)
    }

    func testSchedulesAgainstTorch() throws {
        let oneCycle = try LRSchedule.oneCycle(maxLR: 0.1, totalSteps: 20, pctStart: 0.3)
        for (k, want) in TorchFixtures.oneCycleLR.enumerated() {
            XCTAssertEqual(oneCycle(k), want, accuracy: 1e-15 * max(1, want), "one-cycle step \(k)")
        }
        let stepLR = try LRSchedule.stepDecay(initial: 0.2, stepSize: 3, gamma: 0.5)
        for (k, want) in TorchFixtures.stepLR.enumerated() {
            XCTAssertEqual(stepLR(k), want, accuracy: 1e-17, "step decay step \(k)")
        }
    }
}
