//! Captioning and image generation against their reference implementations: a tiny BLIP written by transformers
//! (greedy caption ids equal transformers' `generate` exactly) and a tiny Stable Diffusion pipeline written by
//! diffusers (prompt embeddings, and the latent after 2 DDIM steps with guidance from a fixed initial latent, to
//! 1e-3), both by `fixtures/models/make_loop_models.py`; seeded generation gives identical PNG bytes.

use candle_core::{Device, Tensor};
use vlmdb::models::ModelFiles;
use vlmdb::models::blip::Blip;
use vlmdb::models::captioner::Captioner;
use vlmdb::models::diffusion::{GenerateOptions, Generator};
use vlmdb::models::llava::Llava;

use crate::models::{fixture, floats, max_abs_diff, reference};

fn captioner() -> Blip {
    let dir = fixture("models/tiny-blip");
    let files = ModelFiles::resolve(&dir.display().to_string()).expect("tiny-blip resolves");
    Blip::load(files, Device::Cpu).expect("tiny-blip loads")
}

fn generator() -> Generator {
    let dir = fixture("models/tiny-sd");
    let files = ModelFiles::resolve(&dir.display().to_string()).expect("tiny-sd resolves");
    Generator::load(files, Device::Cpu).expect("tiny-sd loads")
}

/// The reference's fixed initial latent (`1 × 4 × 16 × 16`).
fn initial_latent(reference: &serde_json::Value) -> Tensor {
    Tensor::from_vec(
        floats(&reference["initial_latent"]),
        (1, 4, 16, 16),
        &Device::Cpu,
    )
    .expect("latent")
}

fn ids(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

#[test]
fn blip_greedy_captions_equal_transformers_generate() {
    let reference = reference("tiny-blip");
    let captioner = captioner();
    assert_eq!(
        captioner.max_new_tokens as u64,
        reference["max_new_tokens"]
            .as_u64()
            .expect("max_new_tokens")
    );
    let cases = reference["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 8);
    for case in cases {
        let file = fixture(case["file"].as_str().expect("file"));
        let bytes = std::fs::read(&file).expect("fixture image");
        let (image, _) = vlmdb::image::decode(&bytes).expect("decodes");
        let prompt = case["prompt"].as_str();
        let pixels = captioner
            .pixels(&image)
            .expect("pixels")
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("pixel values");
        // PIL's 8-bit bicubic, reproduced step by step (see models.rs: within a level or so).
        let diff = max_abs_diff(&pixels, &floats(&case["pixel_values"]));
        assert!(
            diff <= 0.02,
            "{}: pixel values differ by {diff}",
            file.display()
        );
        let got = captioner
            .caption_ids(&image, prompt, captioner.max_new_tokens)
            .expect("caption ids");
        assert_eq!(
            got,
            ids(&case["ids"]),
            "{} with prompt {prompt:?}",
            file.display()
        );
        let text = captioner.decode(&got).expect("caption");
        assert_eq!(
            text,
            case["text"].as_str().expect("text"),
            "{}",
            file.display()
        );
        if let Some(prompt) = prompt {
            assert!(text.starts_with(prompt), "{text:?} starts with the prompt");
        }
    }
}

#[test]
fn stable_diffusion_ddim_latent_matches_diffusers() {
    let reference = reference("tiny-sd");
    let generator = generator();
    assert_eq!((generator.height, generator.width), (32, 32));
    let prompt = reference["prompt"].as_str().expect("prompt");
    let expected_ids = reference["input_ids"].as_array().expect("input ids");
    assert_eq!(
        generator.prompt_ids(prompt).expect("ids"),
        ids(&expected_ids[0])
    );
    assert_eq!(
        generator.prompt_ids("").expect("ids"),
        ids(&expected_ids[1])
    );

    let embeds = generator.prompt_embeds(&[prompt, ""]).expect("embeddings");
    let embeds = embeds.to_vec3::<f32>().expect("3-d");
    let cond: Vec<f32> = embeds[0].concat();
    let uncond: Vec<f32> = embeds[1].concat();
    let diff = max_abs_diff(&cond, &floats(&reference["prompt_embeds"]));
    assert!(diff < 1e-4, "prompt embeddings differ by {diff}");
    let diff = max_abs_diff(&uncond, &floats(&reference["negative_embeds"]));
    assert!(diff < 1e-4, "empty-prompt embeddings differ by {diff}");

    let initial = initial_latent(&reference);
    let options = GenerateOptions {
        steps: reference["steps"].as_u64().expect("steps") as usize,
        guidance: reference["guidance_scale"].as_f64().expect("guidance"),
        negative_prompt: None,
    };
    let latent = generator
        .denoise(prompt, &initial, &options, &mut no_noise)
        .expect("denoise");
    let got = latent
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("values");
    let expected = floats(&reference["final_latent"]);
    let diff = max_abs_diff(&got, &expected);
    assert!(diff < 1e-3, "the 2-step DDIM latent differs by {diff}");
    let moved = max_abs_diff(&got, &floats(&reference["initial_latent"]));
    assert!(moved > 0.1, "denoising changed the latent ({moved})");

    let pixels = generator.decode(&latent).expect("decode");
    let pixels = pixels
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("pixels");
    let diff = max_abs_diff(&pixels, &floats(&reference["decoded"]));
    assert!(diff < 1e-3, "the decoded image differs by {diff}");
}

#[test]
fn the_same_seed_gives_identical_png_bytes_and_another_seed_another_image() {
    let generator = generator();
    let options = GenerateOptions {
        steps: 3,
        guidance: 7.5,
        negative_prompt: None,
    };
    let a = generator
        .generate("a red circle", 7, &options)
        .expect("seed 7");
    let b = generator
        .generate("a red circle", 7, &options)
        .expect("seed 7 again");
    let c = generator
        .generate("a red circle", 8, &options)
        .expect("seed 8");
    assert_eq!(a, b, "same seed, same bytes");
    assert_ne!(a, c, "another seed, another image");
    let (image, info) = vlmdb::image::decode(&a).expect("a PNG");
    assert_eq!(vlmdb::image::format_name(info.format), "png");
    assert_eq!((image.width(), image.height()), (32, 32));
    let again = generator
        .generate("a blue square", 7, &options)
        .expect("another prompt");
    assert_ne!(a, again, "another prompt, another image");
}

fn sdxl() -> Generator {
    let dir = fixture("models/tiny-sdxl");
    let files = ModelFiles::resolve(&dir.display().to_string()).expect("tiny-sdxl resolves");
    Generator::load(files, Device::Cpu).expect("tiny-sdxl loads")
}

#[test]
fn sdxl_conditioning_and_ddim_latents_match_diffusers() {
    let reference = reference("tiny-sdxl");
    let generator = sdxl();
    let prompt = reference["prompt"].as_str().expect("prompt");
    let cond = generator.encode(&[prompt]).expect("conditioning");
    let context = cond
        .context
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("context");
    let diff = max_abs_diff(&context, &floats(&reference["prompt_embeds"]));
    assert!(
        diff < 1e-4,
        "both encoders' penultimate states differ by {diff}"
    );
    let pooled = cond
        .pooled
        .expect("pooled")
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("pooled");
    let diff = max_abs_diff(&pooled, &floats(&reference["pooled_prompt_embeds"]));
    assert!(diff < 1e-4, "the pooled projection differs by {diff}");

    // DDIM over SDXL's schedule still matches diffusers' DDIM (the reference swapped its scheduler for DDIM).
    let mut ddim = sdxl();
    ddim.sampler = ddim.sampler.as_ddim();
    let initial = initial_latent(&reference);
    for (key, steps, guidance) in [("final_latent", 2, 5.0), ("turbo_latent", 1, 0.0)] {
        let options = GenerateOptions {
            steps,
            guidance,
            negative_prompt: None,
        };
        let latent = ddim
            .denoise(prompt, &initial, &options, &mut no_noise)
            .expect("denoise");
        let got = latent
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("values");
        let diff = max_abs_diff(&got, &floats(&reference[key]));
        assert!(diff < 1e-3, "{key}: differs by {diff}");
    }
}

/// DDIM draws no noise.
fn no_noise() -> candle_core::Result<Tensor> {
    Err(candle_core::Error::Msg("DDIM asked for noise".into()))
}

/// A negative prompt replaces the empty prompt on the unconditional side of the guidance, as diffusers'
/// `negative_prompt` does (tiny-sd, DDIM).
#[test]
fn a_negative_prompt_steers_as_diffusers_does() {
    let reference = reference("sampling");
    let case = &reference["negative"];
    let generator = generator();
    assert_eq!(generator.sampler.name(), "DDIMScheduler");
    let prompt = reference["prompt"].as_str().expect("prompt");
    let negative = reference["negative_prompt"].as_str().expect("negative");
    let options = GenerateOptions {
        steps: case["steps"].as_u64().expect("steps") as usize,
        guidance: case["guidance_scale"].as_f64().expect("guidance"),
        negative_prompt: Some(negative.to_string()),
    };
    let initial = initial_latent(case);
    let latent = generator
        .denoise(prompt, &initial, &options, &mut no_noise)
        .and_then(|t| {
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| vlmdb::Error::Usage(e.to_string()))
        })
        .expect("denoise");
    let diff = max_abs_diff(&latent, &floats(&case["final_latent"]));
    assert!(diff < 1e-3, "with a negative prompt: differs by {diff}");
    let plain = generator
        .denoise(
            prompt,
            &initial,
            &GenerateOptions {
                negative_prompt: None,
                ..options
            },
            &mut no_noise,
        )
        .and_then(|t| {
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| vlmdb::Error::Usage(e.to_string()))
        })
        .expect("denoise");
    assert!(
        max_abs_diff(&latent, &plain) > 1e-2,
        "the negative prompt changed nothing"
    );
}

/// tiny-sdxl ships EulerAncestralDiscreteScheduler with trailing spacing (as SDXL-Turbo does): vlmdb samples with
/// it, and given diffusers' own ancestral noise it reaches diffusers' latent — 3 guided steps, with and without a
/// negative prompt (SDXL then encodes it instead of using zeros), and Turbo's 1 unguided step. With vlmdb's own
/// noise, the same seed gives the same bytes.
#[test]
fn sdxl_euler_ancestral_matches_diffusers_given_its_noise() {
    let reference = reference("sampling");
    let generator = sdxl();
    assert_eq!(generator.sampler.name(), "EulerAncestralDiscreteScheduler");
    let prompt = reference["prompt"].as_str().expect("prompt");
    for key in ["euler", "euler_negative", "turbo"] {
        let case = &reference[key];
        let options = GenerateOptions {
            steps: case["steps"].as_u64().expect("steps") as usize,
            guidance: case["guidance_scale"].as_f64().expect("guidance"),
            negative_prompt: case["negative_prompt"].as_str().map(str::to_string),
        };
        let mut noises = case["noise"]
            .as_array()
            .expect("noise")
            .iter()
            .map(|n| Tensor::from_vec(floats(n), (1, 4, 16, 16), &Device::Cpu))
            .collect::<Vec<_>>()
            .into_iter();
        let mut noise = || {
            noises.next().unwrap_or_else(|| {
                Err(candle_core::Error::Msg(
                    "more noise than diffusers drew".into(),
                ))
            })
        };
        let latent = generator
            .denoise(prompt, &initial_latent(case), &options, &mut noise)
            .expect("denoise");
        let got = latent
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("values");
        let expected = floats(&case["final_latent"]);
        // diffusers keeps σ in float32 and the random UNet takes these latents to |x| ≈ 70: agreement is judged
        // relative to that scale (a timestep off by one moves σ by 0.3% and the latent by far more).
        let scale = expected.iter().fold(1f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(&got, &expected);
        assert!(
            diff / scale < 5e-5,
            "{key}: differs by {diff} (scale {scale})"
        );
    }
    let turbo = GenerateOptions {
        steps: 2,
        guidance: 0.0,
        negative_prompt: None,
    };
    let a = generator.generate(prompt, 3, &turbo).expect("seed 3");
    let b = generator.generate(prompt, 3, &turbo).expect("seed 3 again");
    let c = generator.generate(prompt, 4, &turbo).expect("seed 4");
    assert_eq!(a, b, "same seed, same bytes");
    assert_ne!(a, c, "another seed, another image");
}

/// Released pipelines ship OpenAI's `vocab.json` + `merges.txt` without a `tokenizer.json`: the tokenizer built
/// from them gives the ids of transformers' `tokenizer.json` (tiny-clip has all three).
#[test]
fn the_clip_tokenizer_from_vocab_and_merges_equals_tokenizer_json() {
    let dir = fixture("models/tiny-clip");
    let built =
        vlmdb::models::diffusion::clip_bpe(&dir.join("vocab.json"), &dir.join("merges.txt"))
            .expect("built from vocab.json + merges.txt");
    let reference =
        tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer.json");
    let texts = reference_texts();
    assert!(texts.len() > 100);
    for text in &texts {
        let a = built.encode(text.as_str(), true).expect("encode");
        let b = reference.encode(text.as_str(), true).expect("encode");
        assert_eq!(a.get_ids(), b.get_ids(), "{text:?}");
    }
}

/// Every fixture caption and the tricky reference texts of the CLIP fixture.
fn reference_texts() -> Vec<String> {
    let data: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("datasets/karpathy/dataset_shapes.json"))
            .expect("captions"),
    )
    .expect("JSON");
    let mut texts: Vec<String> = data["images"]
        .as_array()
        .expect("images")
        .iter()
        .flat_map(|im| im["sentences"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["raw"].as_str().map(str::to_string))
        .collect();
    for item in reference("tiny-clip")["texts"].as_array().expect("texts") {
        texts.push(item["text"].as_str().expect("text").to_string());
    }
    texts
}

/// LLaVA-1.5 (a tiny `LlavaForConditionalGeneration` written by transformers): the processor's input ids (the
/// conversation format, `<image>` expanded to one token per patch) and `generate(do_sample=False)`'s greedy ids,
/// equal for 4 images × 2 instructions; the captioner gives the decoded text.
#[test]
fn llava_greedy_captions_equal_transformers_generate() {
    let reference = reference("tiny-llava");
    let dir = fixture("models/tiny-llava");
    let mut files = ModelFiles::resolve(&dir.display().to_string()).expect("tiny-llava resolves");
    let llava = Llava::load(&mut files, &Device::Cpu).expect("tiny-llava loads");
    let captioner = Captioner::load(files, Device::Cpu).expect("captioner");
    assert_eq!(captioner.family(), "llava");
    let limit = reference["max_new_tokens"].as_u64().expect("limit") as usize;
    assert_eq!(captioner.default_max_new_tokens(), limit);
    let cases = reference["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 8);
    for case in cases {
        let instruction = case["instruction"].as_str();
        assert_eq!(
            Llava::prompt(instruction),
            case["prompt"].as_str().expect("prompt")
        );
        assert_eq!(
            llava.input_ids(instruction).expect("input ids"),
            ids(&case["input_ids"]),
            "{instruction:?}"
        );
        let file = fixture(case["file"].as_str().expect("file"));
        let (image, _) =
            vlmdb::image::decode(&std::fs::read(&file).expect("image")).expect("decodes");
        let got = llava
            .generate(&image, instruction, limit)
            .expect("generate");
        assert_eq!(got, ids(&case["ids"]), "{} {instruction:?}", file.display());
        assert_eq!(
            captioner
                .caption(&image, instruction, None)
                .expect("caption"),
            case["text"].as_str().expect("text")
        );
        let short = captioner
            .caption_ids(&image, instruction, Some(2))
            .expect("two tokens");
        assert_eq!(short, ids(&case["ids"])[..short.len()], "a prefix");
        assert!(short.len() <= 2);
    }
}

/// Half precision (the UNet's dtype on CUDA), run here on the CPU: the 2-step DDIM latent of tiny-sd moves from
/// diffusers' float32 one by about what diffusers' own float16 UNet moves it, and a seed still gives identical bytes.
#[test]
fn a_half_precision_unet_stays_close_to_float32() {
    let reference = reference("tiny-sd");
    let dir = fixture("models/tiny-sd");
    let files = ModelFiles::resolve(&dir.display().to_string()).expect("tiny-sd resolves");
    let half = Generator::load_in(files, Device::Cpu, candle_core::DType::F16).expect("f16");
    assert_eq!(half.unet_dtype, candle_core::DType::F16);
    let options = GenerateOptions {
        steps: reference["steps"].as_u64().expect("steps") as usize,
        guidance: reference["guidance_scale"].as_f64().expect("guidance"),
        negative_prompt: None,
    };
    let prompt = reference["prompt"].as_str().expect("prompt");
    let latent = half
        .denoise(prompt, &initial_latent(&reference), &options, &mut no_noise)
        .expect("denoise");
    assert_eq!(
        latent.dtype(),
        candle_core::DType::F32,
        "latents stay float32"
    );
    let got = latent
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("values");
    let expected = floats(&reference["final_latent"]);
    let scale = expected.iter().fold(1f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(&got, &expected);
    // diffusers' own float16 UNet moves this latent by 0.224 from its float32 one (fixtures/models/
    // measure_fp16_drift.py; 2.8% of the scale: the random
    // UNet's activations and guidance 7.5 amplify float16's rounding); vlmdb's moves it by about as much.
    assert!(
        diff / scale < 4e-2,
        "float16 UNet: differs by {diff} (scale {scale})"
    );
    assert_eq!(
        half.vae_dtype,
        candle_core::DType::F16,
        "SD's VAE runs in half precision too"
    );
    let decoded = half
        .decode(&latent)
        .and_then(|t| {
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| vlmdb::Error::Usage(e.to_string()))
        })
        .expect("decode");
    let pixels = max_abs_diff(&decoded, &floats(&reference["decoded"]));
    assert!(
        pixels < 0.1,
        "the float16 VAE's image differs by {pixels} (of 1)"
    );
    let a = half.generate(prompt, 5, &options).expect("png");
    let b = half.generate(prompt, 5, &options).expect("png again");
    assert_eq!(a, b);
}
