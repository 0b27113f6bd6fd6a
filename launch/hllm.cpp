// `hllm`: dispatches git-style to `hllm-<command>` beside this executable, so each command links only what it
// needs (sentencepiece and libtorch must never share a process: STACK.md pitfall 1).
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace {

struct command {
  const char* name;
  const char* summary;
};

constexpr command commands[] = {
    {"synth", "write the embedded synthetic dataset (interactions.csv, items.csv)"},
    {"convert", "turn PixelRec, Amazon Books or MovieLens files into the CSVs prepare reads"},
    {"prepare", "turn interaction and item CSVs into a prepared, tokenized dataset"},
    {"encode", "compute item embeddings of a prepared dataset (.npy)"},
    {"train", "run a training job (stage 1, cache fill, stage 2, evaluation)"},
    {"launch", "start and watch the ranks of a job on one host, several hosts (ssh) or Slurm; restart on failure"},
    {"export", "export item or user embeddings of a trained job (stage 3: .npy + ids)"},
    {"index", "build or check an ANN index (HNSW) over an item export"},
    {"recommend", "top-k items for a user from the job's User LLM and the ANN index"},
    {"checkpoint", "list, verify and digest checkpoints"},
    {"keygen", "create a ZeroMQ CURVE key pair for authenticated transport"},
    {"top", "watch a running job in the terminal (its console: actors, progress, loss, cache)"},
};

std::filesystem::path bin_dir() { return std::filesystem::read_symlink("/proc/self/exe").parent_path(); }

void usage(FILE* out) {
  std::fprintf(out,
               "hllm: train HLLM recommenders as an actor-based, resumable job\n\n"
               "usage: hllm <command> [options]     (hllm <command> --help for its options)\n\ncommands:\n");
  for (const auto& c : commands) {
    bool present = std::filesystem::exists(bin_dir() / (std::string("hllm-") + c.name));
    std::fprintf(out, "  %-11s %s%s\n", c.name, c.summary, present ? "" : " [not built]");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string name = argv[1];
  auto exe = bin_dir() / ("hllm-" + name);
  if (name.find('/') != std::string::npos || !std::filesystem::exists(exe)) {
    std::fprintf(stderr, "hllm: unknown command '%s'\n\n", name.c_str());
    usage(stderr);
    return 2;
  }
  std::vector<char*> args;
  std::string argv0 = "hllm " + name;  // so the command's --help and errors name it as users typed it
  args.push_back(argv0.data());
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  ::execv(exe.c_str(), args.data());
  std::fprintf(stderr, "hllm: cannot run '%s': %s\n", exe.c_str(), std::strerror(errno));
  return 127;
}
