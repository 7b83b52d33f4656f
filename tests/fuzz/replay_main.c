/* Replays every file of a corpus directory through LLVMFuzzerTestOneInput, so
 * the fuzz corpora run as ordinary tests in every build (ASan build included). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    DIR *d = opendir(argv[1]);
    if (!d) {
        perror(argv[1]);
        return 1;
    }
    int n = 0;
    struct dirent *e;
    static uint8_t buf[1 << 20];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        /* An allocation of exactly len bytes, as libFuzzer gives: ASan then
         * catches a parser that reads one byte too far. */
        uint8_t *in = malloc(len ? len : 1);
        if (!in) {
            closedir(d);
            return 1;
        }
        memcpy(in, buf, len);
        LLVMFuzzerTestOneInput(in, len);
        free(in);
        n++;
    }
    closedir(d);
    printf("replayed %d inputs\n", n);
    return n > 0 ? 0 : 1;
}
