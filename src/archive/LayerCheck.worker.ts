// Worker thread of checkLayerInWorker (LayerCheck.ts: checks one layer file) and of feedLayerCheck
// (LayerFeed.ts: checks the chunks the main thread hands over); replies once.
import { parentPort, workerData } from "node:worker_threads"
import { runCheck, type WorkerInput } from "./LayerCheck.js"
import { type FedInput, runFed } from "./LayerFeed.js"

const input = workerData as WorkerInput | FedInput
void ("fed" in input ? runFed(input, parentPort!) : runCheck(input)).then((reply) => parentPort!.postMessage(reply))
