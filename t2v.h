/* t2v.h: public API of t2v.c, the ModelScope text-to-video model (Diffusers TextToVideoSDPipeline) in C99.
 *
 * One function per stage of the pipeline, in the order the data flows:
 *   prompt --t2v_tokenize--> ids --t2v_encode_text--> text states --t2v_unet (x steps, scheduler)-->
 *   latents --t2v_vae_decode--> frames.
 * Every tensor crosses this API as float32 in Diffusers' layout (C order), so any stage can be compared
 * with numpy. Errors in the model file or arguments end the program with a message and exit code 1
 * (t2v_die): no function returns an error.
 */
#ifndef T2V_H
#define T2V_H

#include <stddef.h>
#include <stdint.h>

/* Prints "t2v: error: <message>" and exits with code 1, removing a half-written output file first. */
void t2v_die(const char *fmt, ...);

/* ---- the model file (weights/README.md) ---- */
enum { T2V_F32 = 0, T2V_I8 = 1, T2V_I32 = 2, T2V_U8 = 3, T2V_F16 = 4 }; /* tensor dtype codes (F16: IEEE half) */
#define T2V_MAX_DIMS 8

typedef struct {
    const char *name;          /* e.g. "unet/down_blocks.0.resnets.0.conv1.weight" */
    int dtype, ndim;
    int64_t shape[T2V_MAX_DIMS];
    const void *data;          /* points into the mapped file: never copied */
    size_t nbytes;
    int group_size;            /* int8 tensors: values per float32 scale; 0 otherwise */
    const float *scales;
} T2VTensor;

typedef struct T2VModel T2VModel;

/* Maps (or reads) the file and checks it: the header, every tensor's place, dtype and shape against what the
 * config implies, and every config value t2v reads against its type and range. Exits with a message on a
 * bad file. */
T2VModel *t2v_load(const char *path);
void t2v_free(T2VModel *m);
const T2VTensor *t2v_find_tensor(const T2VModel *m, const char *name); /* NULL when absent */
const char *t2v_config(const T2VModel *m, const char *key);          /* "unet.norm_eps" -> "1e-05"; NULL */
/* The integer config value of key, which must be in [lo, hi]; dies with a message naming the key otherwise. */
int t2v_config_int(const T2VModel *m, const char *key, long lo, long hi);
const char *t2v_model_path(const T2VModel *m);
/* 1 when the file holds a Stable Diffusion 1.x model (StableDiffusionPipeline: Text2Video-Zero), 0 for
 * ModelScope's TextToVideoSDPipeline. */
int t2v_is_stable_diffusion(const T2VModel *m);

/* How int8 weights are multiplied (--int8-math): dequantised into float32 panels and multiplied in float32
 * (FLOAT), or with the activations quantised to int8 too and the products summed in int32 (INT). The default
 * is INT when this build has a SIMD integer kernel (AVX-512 VNNI), FLOAT otherwise. Process-wide. */
typedef enum { T2V_INT8_MATH_FLOAT = 0, T2V_INT8_MATH_INT = 1 } T2VInt8Math;
void t2v_set_int8_math(T2VInt8Math math);
T2VInt8Math t2v_int8_math(void);

/* ---- tokenizer.c: CLIP byte-level BPE ---- */
typedef enum {
    T2V_TOKENIZER_DIFFUSERS = 0, /* what Diffusers feeds the model: transformers' CLIPTokenizer without ftfy */
    T2V_TOKENIZER_OPENCLIP = 1   /* what the model was trained with: openai/OpenCLIP simple_tokenizer */
} T2VTokenizerMode;

typedef struct T2VTokenizer T2VTokenizer;
/* Builds the tokenizer from the model file's tokenizer tables and config (validated). */
T2VTokenizer *t2v_tokenizer_new(const T2VModel *m);
void t2v_tokenizer_free(T2VTokenizer *t);
/* Writes exactly max_len ids (bos, tokens, eos, padding; truncated keeping eos) and returns the length the
 * prompt would have had untruncated (bos and eos included). Any byte string is accepted: invalid UTF-8
 * is read as U+FFFD. */
int t2v_tokenize(const T2VTokenizer *t, const char *text, T2VTokenizerMode mode, int32_t *ids, int max_len);
int t2v_context_length(const T2VModel *m); /* tokenizer.model_max_length: 77 for CLIP */
const T2VTokenizer *t2v_model_tokenizer(const T2VModel *m);

/* ---- stages ---- */
int t2v_text_hidden_size(const T2VModel *m);
/* CLIPTextModel: ids (context_length) -> last_hidden_state (context_length, hidden). */
void t2v_encode_text(T2VModel *m, const int32_t *ids, float *out);

/* UNet3DConditionModel: sample (B,C,F,H,W), one timestep for the whole batch, text states (B,77,D) ->
 * noise prediction (B,C,F,H,W). dump_dir: when not NULL, every intermediate of the golden fixture is
 * written there as act_*.npy. */
void t2v_unet(T2VModel *m, const float *sample, int B, int F, int H, int W, double timestep,
              const float *context, float *out, const char *dump_dir);

/* UNet2DConditionModel (a Stable Diffusion 1.x file): sample (N,C,H,W), text states (N,77,D) -> (N,C,H,W).
 * cross_frame_batch > 0 runs Text2Video-Zero's CrossFrameAttnProcessor(batch_size=cross_frame_batch): the N images
 * are that many groups of N / cross_frame_batch frames, and every self-attention (attn1) takes its keys and values
 * from the first frame of its group. 0: ordinary attention. */
void t2v_unet_2d(T2VModel *m, const float *sample, int N, int H, int W, double timestep, const float *context,
                 int cross_frame_batch, float *out, const char *dump_dir);

/* Pixels per latent along H and W: 2^(VAE blocks - 1), 8 for this model. */
int t2v_vae_scale_factor(const T2VModel *m);
/* AutoencoderKL: latents (N,4,h,w), already divided by scaling_factor -> images (N,3,8h,8w), no clamp. */
void t2v_vae_decode(T2VModel *m, const float *latents, int N, int h, int w, float *out);
/* images (N,3,H,W) in [-1,1] -> latent distribution mean and clamped logvar (N,4,H/8,W/8); logvar may be NULL. */
void t2v_vae_encode(T2VModel *m, const float *images, int N, int H, int W, float *mean, float *logvar);

/* T2V_PROFILE=1 in the environment: time and GFLOP per kind of layer work since the start, printed on stderr. */
void t2v_profile_report(void);

/* ---- the whole pipeline ---- */
/* PNDM: PNDMScheduler with skip_prk_steps (PLMS), Stable Diffusion's default (Text2Video-Zero only) */
typedef enum { T2V_SCHEDULER_DDIM = 0, T2V_SCHEDULER_DPM = 1, T2V_SCHEDULER_PNDM = 2 } T2VSchedulerKind;

typedef struct {
    const char *prompt, *negative_prompt;  /* negative: "" by default, as Diffusers */
    T2VTokenizerMode tokenizer;
    int frames, height, width, steps;
    double guidance;
    T2VSchedulerKind scheduler;
    uint64_t seed;
    const float *latents;                  /* (1,4,F,H/8,W/8) to start from instead of seeded noise, or NULL */
    const float *init_frames;              /* video-to-video: the input video, (F,H,W,3) in [0,1], or NULL */
    double strength;                       /* video-to-video: how much of the schedule to run, (0, 1] */
    const char *dump_dir;                  /* write the golden pipeline/ files there, or NULL */
    /* Text2Video-Zero (a Stable Diffusion file): the global motion, in pixels of a 512x512 frame per frame, and
     * the two points of the schedule (counted from its end) between which the first frame is copied to the
     * others: denoise frame 0 to t0, warp the copies, re-noise them to t1, denoise all from t1 (t0 < t1 < steps) */
    double motion_x, motion_y;
    int t0, t1;
    /* Text2Video-Zero long videos: 0 runs all frames in one pipeline call; N >= 2 runs Diffusers' chunked recipe,
     * N frames a call: frame 0 and the next N-1 frames, the generator seeded anew each time */
    int chunk_size;
    int quiet;
} T2VGenerateOptions;

/* Runs TextToVideoSDPipeline, or VideoToVideoSDPipeline when init_frames is set, or TextToVideoZeroPipeline
 * when the file holds Stable Diffusion; returns frames (F, H, W, 3)
 * as float32 in [0,1] (caller frees). */
float *t2v_generate(T2VModel *m, const T2VGenerateOptions *opt);

#endif
