// Worker thread of checkLayerInWorker (LayerCheck.ts): checks one layer file, replies once.
import { parentPort, workerData } from "node:worker_threads"
import { runCheck, type WorkerInput } from "./LayerCheck.js"

void runCheck(workerData as WorkerInput).then((reply) => parentPort!.postMessage(reply))
