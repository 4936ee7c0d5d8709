// Worker thread of checkLayerInWorker (LayerCheck.ts: checks one layer file) and of feedLayerCheck
// (LayerFeed.ts: checks the chunks the main thread hands over); replies once. Scavenges as it reads
// (Scavenge.ts), which keeps the RSS of the process it runs in down.
import { parentPort, workerData } from "node:worker_threads"
import { runCheck, type WorkerInput } from "./LayerCheck.js"
import { type FedInput, runFed } from "./LayerFeed.js"
import { scavenger } from "./Scavenge.js"

const input = workerData as WorkerInput | FedInput
const room = scavenger()
void ("fed" in input ? runFed(input, parentPort!, room) : runCheck(input, room)).then((reply) => parentPort!.postMessage(reply))
